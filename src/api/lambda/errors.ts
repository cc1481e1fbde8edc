// Errors on the Lambda routes, as the AWS SDKs parse them: the type in `x-amzn-ErrorType` and a JSON body with
// the message. Domain errors (FunctionError kinds) map to Lambda's types here, in one place.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FunctionError, type ErrorKind } from '../../functions/errors.js';
import { SignatureError } from '../sigv4.js';

export class LambdaError extends Error {
  override name = 'LambdaError';
  constructor(readonly type: string, readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

export const invalidParameter = (message: string) => new LambdaError('InvalidParameterValueException', 400, message);
export const invalidContent = (message: string) => new LambdaError('InvalidRequestContentException', 400, message);
export const resourceNotFound = (message: string) => new LambdaError('ResourceNotFoundException', 404, message);

const typeOf: Record<ErrorKind, { type: string; status: number }> = {
  invalid: { type: 'InvalidParameterValueException', status: 400 },
  not_found: { type: 'ResourceNotFoundException', status: 404 },
  conflict: { type: 'ResourceConflictException', status: 409 },
  busy: { type: 'TooManyRequestsException', status: 429 },
  too_large: { type: 'RequestTooLargeException', status: 413 },
  // 503, as on fnvm's own API: a function between hosts, or one with no VM for now (the SDKs retry 5xx alike).
  unavailable: { type: 'ServiceException', status: 503 },
};

function lambdaErrorOf(error: Error): LambdaError | undefined {
  if (error instanceof LambdaError) return error;
  if (error instanceof SignatureError) return new LambdaError(error.type, error.status, error.message);
  if (error instanceof FunctionError) {
    const { type, status } = typeOf[error.kind];
    // Lambda's throttle names its reason; the SDK's retry logic reads the type.
    const extra = error.kind === 'busy' ? { Reason: 'ReservedFunctionConcurrentInvocationLimitExceeded' } : {};
    return new LambdaError(type, status, error.message, extra);
  }
  const fastifyError: Partial<FastifyError> & Error = error;
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new LambdaError('RequestTooLargeException', 413, fastifyError.message);
  const status = fastifyError.statusCode ?? 500;
  if (status >= 400 && status < 500) return new LambdaError('InvalidRequestContentException', status, fastifyError.message);
  return undefined;
}

/** The body the SDKs parse: the message, and whether it is the caller's fault or the service's. */
const bodyOf = (error: LambdaError) => ({ Type: error.status >= 500 ? 'Service' : 'User', message: error.message, ...error.extra });

/** A request the fleet could not forward (src/fleet/forward.ts): the domain's `unavailable`, on a raw response. */
export function lambdaRefusal(res: ServerResponse, message: string): void {
  const error = new LambdaError(typeOf.unavailable.type, typeOf.unavailable.status, message);
  const text = JSON.stringify(bodyOf(error));
  if (!res.hasHeader('x-amzn-requestid')) res.setHeader('x-amzn-requestid', randomUUID()); // refused before the route set one
  res.writeHead(error.status, { 'content-type': 'application/json', 'x-amzn-errortype': error.type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendLambdaError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  let known = lambdaErrorOf(error);
  if (!known) {
    request.log.error({ err: error }, 'unhandled error');
    known = new LambdaError('ServiceException', 500, 'internal server error');
  }
  void reply
    .status(known.status)
    .header('x-amzn-errortype', known.type)
    .send(bodyOf(known));
}

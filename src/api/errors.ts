// The one place where errors become HTTP responses: {"error": "..."} with the right status.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FunctionError, type ErrorKind } from '../functions/errors.js';

const statusOf: Record<ErrorKind, number> = {
  invalid: 400,
  not_found: 404,
  conflict: 409,
  busy: 429,
  unavailable: 503,
  too_large: 413,
};

export function sendError(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  if (error instanceof FunctionError) {
    void reply.status(statusOf[error.kind]).send({ error: error.message });
    return;
  }
  const fastifyError: Partial<FastifyError> & Error = error;
  if (fastifyError.validation) {
    void reply.status(400).send({ error: `invalid request: ${fastifyError.message}` });
    return;
  }
  // Fastify's own client errors: bad JSON (400), body too large (413), unsupported media type (415)...
  const status = fastifyError.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    void reply.status(status).send({ error: fastifyError.message });
    return;
  }
  request.log.error({ err: error }, 'unhandled error');
  void reply.status(500).send({ error: 'internal server error' });
}

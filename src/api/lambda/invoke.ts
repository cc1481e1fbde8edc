// Invoke as Lambda answers it: the handler's return value as the body, a handler error or timeout as a 200
// with X-Amz-Function-Error and Lambda's error payload, and with `X-Amz-Log-Type: Tail` the last 4 KB of the
// invocation's log in Lambda's START/END/REPORT form.
import type { FastifyReply } from 'fastify';
import { measuredJson } from '../../guest/limits.js';
import type { InvokeResponse } from '../../functions/service.js';
import type { FunctionRecord } from '../../store/types.js';
import { invalidParameter } from './errors.js';
import { latest } from './names.js';

export type InvocationType = 'RequestResponse' | 'Event' | 'DryRun';

/** Lambda returns the last 4 KB of the log. */
export const logTailBytes = 4096;

export function invocationTypeOf(header: string | string[] | undefined): InvocationType {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value === 'RequestResponse') return 'RequestResponse';
  if (value === 'Event' || value === 'DryRun') return value;
  throw invalidParameter(`X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not "${value}"`);
}

export function wantsTail(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value === 'None') return false;
  if (value === 'Tail') return true;
  throw invalidParameter(`X-Amz-Log-Type must be None or Tail, not "${value}"`);
}

/** The payload Lambda returns for a failed invocation. */
function errorPayload(answer: InvokeResponse, record: FunctionRecord): Record<string, unknown> {
  if (answer.status === 'timeout') {
    return {
      errorType: 'Sandbox.Timedout',
      errorMessage: `RequestId: ${answer.request_id} Error: Task timed out after ${record.timeout_seconds.toFixed(2)} seconds`,
    };
  }
  const error = answer.error ?? { type: 'Error', message: 'the invocation failed', stack: '' };
  return {
    errorType: error.type,
    errorMessage: error.message,
    requestId: answer.request_id,
    stackTrace: error.stack === '' ? [] : error.stack.split('\n'),
  };
}

/** The invocation's log as Lambda writes it, cut to its last 4 KB at a character boundary. */
export function logTail(answer: InvokeResponse, record: FunctionRecord): string {
  const id = answer.request_id;
  const lines = [`START RequestId: ${id} Version: ${latest}`, ...answer.logs];
  if (answer.status === 'timeout') lines.push(`${new Date().toISOString()} ${id} Task timed out after ${record.timeout_seconds.toFixed(2)} seconds`);
  lines.push(`END RequestId: ${id}`);
  const init = answer.cold_start && record.init_ms !== null ? `\tInit Duration: ${record.init_ms.toFixed(2)} ms` : '';
  lines.push(
    `REPORT RequestId: ${id}\tDuration: ${answer.duration_ms.toFixed(2)} ms\tBilled Duration: ${Math.ceil(answer.duration_ms)} ms` +
      `\tMemory Size: ${record.memory_mb} MB${init}\t`,
  );
  const bytes = Buffer.from(`${lines.join('\n')}\n`);
  let start = Math.max(0, bytes.length - logTailBytes);
  while (start < bytes.length && (bytes[start] ?? 0) >> 6 === 0b10) start += 1; // not inside a UTF-8 sequence
  return bytes.subarray(start).toString('base64');
}

export function sendInvokeAnswer(reply: FastifyReply, answer: InvokeResponse, record: FunctionRecord, tail: boolean): FastifyReply {
  void reply.header('x-amzn-requestid', answer.request_id).header('x-amz-executed-version', latest);
  if (tail) void reply.header('x-amz-log-result', logTail(answer, record));
  if (answer.status !== 'success') {
    return reply.header('x-amz-function-error', 'Unhandled').type('application/json').send(JSON.stringify(errorPayload(answer, record)));
  }
  return reply.type('application/json').send(measuredJson(answer.response) ?? JSON.stringify(answer.response ?? null));
}

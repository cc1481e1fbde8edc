// Structured log lines for invocations: one per invocation at debug level, with what identifies and
// measures it, never its event, response, logs or the function's environment (payloads and secrets).
import type { FastifyBaseLogger } from 'fastify';
import type { Activity } from '../functions/activity.js';

export function logInvocations(activity: Activity, log: FastifyBaseLogger): void {
  // Not even subscribed above debug: the invoke path builds no log object nobody reads. The level is set at start.
  if (log.level !== 'debug' && log.level !== 'trace') return;
  activity.on('invocation', ({ record, name, hostMs }) => {
    log.debug({
      request_id: record.request_id,
      function: name,
      function_id: record.function_id,
      version: record.version,
      status: record.status,
      duration_ms: record.duration_ms,
      host_ms: Math.round(hostMs * 1000) / 1000,
      cold_start: record.cold_start,
      ...(record.error && { error_type: record.error.type }),
    }, 'invocation');
  });
  activity.on('throttled', ({ name }) => log.debug({ function: name }, 'invocation throttled: at max_concurrency'));
}

// The invoke answer as JSON text. A large response was serialised once already, when the host measured it
// (src/guest/limits.ts); that text is spliced in rather than serialising the same value a second time.
import { measuredJson } from '../guest/limits.js';
import type { InvokeResponse } from './service.js';

/** JSON.stringify(answer), byte for byte, reusing the measured text of its response when there is one. */
export function answerJson(answer: InvokeResponse): string {
  const text = measuredJson(answer.response);
  if (text === undefined) return JSON.stringify(answer);
  const { request_id, status, duration_ms, logs, error, cold_start, version } = answer;
  const head = JSON.stringify({ request_id, status, duration_ms });
  const tail = JSON.stringify({ logs, error, cold_start, version });
  return `${head.slice(0, -1)},"response":${text},${tail.slice(1)}`;
}

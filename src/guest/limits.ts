// Size limits the host enforces on what a guest returns, whatever the agent claims to have checked.
import type { ErrorInfo, InvokeResult } from './protocol.js';

/**
 * A handler's response may serialise to at most this many bytes: compact JSON as JSON.stringify writes it
 * (non-ASCII unescaped), UTF-8. Exactly 6 MiB is allowed; one byte more is ResponseTooLarge.
 */
export const maxResponseBytes = 6 * 1024 * 1024;

function responseTooLarge(bytes: number): ErrorInfo {
  return {
    type: 'ResponseTooLarge',
    // Says who measured: the agents check first, so a host-side catch means the agent did not.
    message: `the handler's response is ${bytes} bytes of JSON, over the ${maxResponseBytes}-byte (6 MiB) limit (measured by the host)`,
    stack: '',
  };
}

/**
 * An invoke result whose response is over the limit becomes status `error` (ResponseTooLarge). A frame no
 * bigger than the limit cannot carry a bigger response, so only large frames pay for re-serialising it.
 */
export function limitResponse(result: InvokeResult, frameBytes: number): InvokeResult {
  if (frameBytes <= maxResponseBytes || result.status !== 'success') return result;
  const bytes = Buffer.byteLength(JSON.stringify(result.response) ?? 'null');
  if (bytes <= maxResponseBytes) return result;
  return { ...result, status: 'error', response: null, error: responseTooLarge(bytes) };
}

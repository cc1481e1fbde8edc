// Size limits the host enforces on what a guest returns, whatever the agent claims to have checked.
import { nestsDeeperThan } from '../json-depth.js';
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
 * Re-serialising can grow a JSON text at most ~5.3 times (`1e20` becomes `100000000000000000000`), so a frame
 * under limit / 6 cannot carry a response over the limit: only larger frames pay for measuring it.
 */
const measureAboveFrameBytes = Math.floor(maxResponseBytes / 6);

/**
 * Responses nest at most this deep: twice the event limit, so a handler can echo any event it was given, and
 * well short of the ~4,000 levels that overflow the stack of the HTTP reply's JSON.stringify.
 */
export const maxResponseDepth = 1024;

/**
 * An invoke result whose response is over the size or depth limit becomes status `error` (ResponseTooLarge,
 * ResponseTooDeep): the handler's doing, recorded like any error; the VM keeps serving.
 */
export function limitResponse(result: InvokeResult, frameBytes: number): InvokeResult {
  if (result.status !== 'success') return result;
  // Nesting that deep takes twice as many bytes of brackets: smaller frames skip the walk.
  if (frameBytes > 2 * maxResponseDepth && nestsDeeperThan(result.response, maxResponseDepth)) {
    const message = `the handler's response nests deeper than ${maxResponseDepth} levels`;
    return { ...result, status: 'error', response: null, error: { type: 'ResponseTooDeep', message, stack: '' } };
  }
  if (frameBytes <= measureAboveFrameBytes) return result;
  const bytes = Buffer.byteLength(JSON.stringify(result.response) ?? 'null');
  if (bytes <= maxResponseBytes) return result;
  return { ...result, status: 'error', response: null, error: responseTooLarge(bytes) };
}

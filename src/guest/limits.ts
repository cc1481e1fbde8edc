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
export function limitResponse(result: InvokeResult, frame: Buffer): InvokeResult {
  if (result.status !== 'success') return result;
  if (tooDeep(result.response, frame)) {
    const message = `the handler's response nests deeper than ${maxResponseDepth} levels`;
    return { ...result, status: 'error', response: null, error: { type: 'ResponseTooDeep', message, stack: '' } };
  }
  if (frame.length <= measureAboveFrameBytes) return result;
  const text = JSON.stringify(result.response) ?? 'null';
  const bytes = Buffer.byteLength(text);
  if (bytes > maxResponseBytes) return { ...result, status: 'error', response: null, error: responseTooLarge(bytes) };
  if (typeof result.response === 'object' && result.response !== null) measured.set(result.response, text);
  return result;
}

/**
 * Large responses the host serialised to measure them, with that JSON text: the answer to the client splices
 * it in (src/functions/answer.ts) instead of serialising the same value again.
 */
const measured = new WeakMap<object, string>();

export function measuredJson(response: unknown): string | undefined {
  return typeof response === 'object' && response !== null ? measured.get(response) : undefined;
}

/**
 * The response sits two levels down the reply (reply -> result -> response), so a frame whose text nests at
 * most maxResponseDepth + 2 deep cannot carry one too deep: a scan of the bytes, far cheaper than walking the
 * parsed value, settles almost every frame; only deeper ones are walked.
 */
function tooDeep(response: unknown, frame: Buffer): boolean {
  // Nesting that deep takes twice as many bytes of brackets: smaller frames skip even the scan.
  if (frame.length <= 2 * maxResponseDepth) return false;
  return jsonTextDepth(frame) > maxResponseDepth + 2 && nestsDeeperThan(response, maxResponseDepth);
}

const [quote, backslash, openBrace, closeBrace, openBracket, closeBracket] = [0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d];

/**
 * How deep arrays and objects nest in a JSON text that JSON.parse accepted: brackets outside strings are
 * structure, and UTF-8 continuation bytes never equal an ASCII character. One pass, no allocation.
 */
export function jsonTextDepth(text: Buffer): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const byte = text[i];
    if (inString) {
      if (byte === backslash) i++; // the escaped character, whatever it is
      else if (byte === quote) inString = false;
    } else if (byte === quote) {
      inString = true;
    } else if (byte === openBrace || byte === openBracket) {
      if (++depth > deepest) deepest = depth;
    } else if (byte === closeBrace || byte === closeBracket) {
      depth--;
    }
  }
  return deepest;
}

// Checks every frame a guest sends against guest/PROTOCOL.md before the host uses it. User code runs as root
// in the guest, inside the agent's process, so a frame is untrusted input: nothing here casts.
import type { ClockResult, ErrorInfo, InvokeResult, LoadResult, PingResult, RequestMap, RequestType, StatsResult } from './protocol.js';
import { limitResponse } from './limits.js';

/** A frame that does not follow the protocol: the guest is treated as hostile. */
export class ProtocolViolation extends Error {
  override name = 'ProtocolViolation';
}

/** The agent caps an invocation's logs at 1 MiB of UTF-8 (plus one truncation line); UTF-16 length <= bytes. */
export const maxLogChars = 1024 * 1024 + 1024;

export type CheckedReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: ErrorInfo };

type Fields = Record<string, unknown>;

function record(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolViolation(`${what} is not an object`);
  // Object.entries copies own enumerable keys only: a JSON.parse result has nothing else, and no prototype tricks.
  return Object.fromEntries(Object.entries(value));
}

function string(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new ProtocolViolation(`${what} is not a string`);
  return value;
}

function integer(value: unknown, what: string, min = Number.MIN_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ProtocolViolation(`${what} is not an integer >= ${min}`);
  }
  return value;
}

function finite(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ProtocolViolation(`${what} is not a finite number`);
  return value;
}

function boolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new ProtocolViolation(`${what} is not a boolean`);
  return value;
}

function nullable<T>(check: (value: unknown, what: string) => T): (value: unknown, what: string) => T | null {
  return (value, what) => (value === null ? null : check(value, what));
}

/** Error texts are stored with every invocation record: each is kept to this many characters. */
export const maxErrorChars = 64 * 1024;

export function errorInfo(value: unknown, what = 'error'): ErrorInfo {
  const fields = record(value, what);
  const text = (field: unknown, name: string) => {
    const full = string(field, `${what}.${name}`);
    return full.length <= maxErrorChars ? full : `${full.slice(0, maxErrorChars)}... [truncated]`;
  };
  return { type: text(fields.type, 'type'), message: text(fields.message, 'message'), stack: text(fields.stack, 'stack') };
}

function logs(value: unknown, what: string): string[] {
  if (!Array.isArray(value)) throw new ProtocolViolation(`${what} is not an array`);
  if (value.length > maxLogChars) throw new ProtocolViolation(`${what} has ${value.length} lines`);
  const lines: string[] = [];
  let chars = 0;
  for (const line of value) {
    const text = string(line, `${what} entry`);
    chars += text.length;
    if (chars > maxLogChars) throw new ProtocolViolation(`${what} exceed ${maxLogChars} characters`);
    lines.push(text);
  }
  return lines;
}

function runtime(value: unknown, what: string): PingResult['runtime'] {
  if (value === 'node' || value === 'python') return value;
  throw new ProtocolViolation(`${what} is not node or python`);
}

function status(value: unknown, what: string): InvokeResult['status'] {
  if (value === 'success' || value === 'error') return value;
  throw new ProtocolViolation(`${what} is not success or error`);
}

/** The envelope: `id` a positive integer, `ok` a boolean, then `result` or an ErrorInfo `error`. */
export function checkReply(value: unknown): CheckedReply {
  const fields = record(value, 'reply');
  const id = integer(fields.id, 'reply id', 1);
  if (boolean(fields.ok, 'reply ok')) {
    if (!('result' in fields)) throw new ProtocolViolation('ok reply without result');
    return { id, ok: true, result: fields.result };
  }
  return { id, ok: false, error: errorInfo(fields.error, 'reply error') };
}

function ping(value: unknown): PingResult {
  const f = record(value, 'ping result');
  return {
    runtime: runtime(f.runtime, 'runtime'),
    runtime_version: string(f.runtime_version, 'runtime_version'),
    agent_version: integer(f.agent_version, 'agent_version', 1),
    loaded_version: nullable(integer)(f.loaded_version, 'loaded_version'),
    time_ms: finite(f.time_ms, 'time_ms'),
    monotonic_ms: finite(f.monotonic_ms, 'monotonic_ms'),
  };
}

/** `renew` and `clock`: the guest's clock after the change, and whether the agent owns the guest's system. */
function clock(value: unknown): ClockResult {
  const f = record(value, 'clock result');
  return { time_ms: finite(f.time_ms, 'time_ms'), system: boolean(f.system, 'system') };
}

function load(value: unknown): LoadResult {
  const f = record(value, 'load result');
  return {
    version: integer(f.version, 'version'),
    duration_ms: finite(f.duration_ms, 'duration_ms'),
    logs: logs(f.logs, 'logs'),
  };
}

/** `frame`: the reply's JSON text, which the response limits measure. */
function invoke(value: unknown, frame: Buffer): InvokeResult {
  const f = record(value, 'invoke result');
  if (!('response' in f)) throw new ProtocolViolation('invoke result without response');
  const result: InvokeResult = {
    status: status(f.status, 'status'),
    response: f.response, // any JSON value: it came out of JSON.parse
    error: nullable(errorInfo)(f.error, 'invoke error'),
    logs: logs(f.logs, 'logs'),
    duration_ms: finite(f.duration_ms, 'duration_ms'),
    version: integer(f.version, 'version'),
  };
  if ((result.status === 'success') !== (result.error === null)) {
    throw new ProtocolViolation('invoke status and error disagree');
  }
  // Both agents send null with an error; anything else would dodge the response limits, which skip errors.
  if (result.status === 'error' && result.response !== null) throw new ProtocolViolation('an error result carries a response');
  return limitResponse(result, frame);
}

function stats(value: unknown): StatsResult {
  const f = record(value, 'stats result');
  return {
    inflight: integer(f.inflight, 'inflight', 0),
    loaded_version: nullable(integer)(f.loaded_version, 'loaded_version'),
    memory_rss: integer(f.memory_rss, 'memory_rss', 0),
  };
}

function settle(value: unknown): RequestMap['settle']['result'] {
  return { dropped_caches: boolean(record(value, 'settle result').dropped_caches, 'dropped_caches') };
}

/** One checker per request type: the result of an ok reply, typed, or a ProtocolViolation. */
export const resultCheckers: { [T in RequestType]: (value: unknown, frame: Buffer) => RequestMap[T]['result'] } = {
  ping,
  load,
  invoke,
  stats,
  settle,
  renew: clock,
  clock,
};

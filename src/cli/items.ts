// The API's function items and invocation records, as much of them as the CLI shows (the rest is printed raw).
import { isObject, numberAt, optionalString, stringAt, stringsAt, type JsonObject } from './json.js';

export type FunctionState = 'creating' | 'booting' | 'deploying' | 'ready' | 'error';
const states: ReadonlySet<string> = new Set(['creating', 'booting', 'deploying', 'ready', 'error']);
const isState = (state: string): state is FunctionState => states.has(state);

export interface FunctionSummary {
  id: string;
  name: string;
  runtime: string;
  state: FunctionState | 'unknown';
  error: string | null;
  version: number;
  memory_mb: number;
  updated_at: string;
  package: { sha256: string; size: number } | null;
  /** The item exactly as the server sent it, for --json and `get`. */
  raw: JsonObject;
}

export function functionSummary(item: JsonObject): FunctionSummary {
  const state = stringAt(item, 'state');
  const pkg = item.package;
  return {
    id: stringAt(item, 'id'),
    name: stringAt(item, 'name'),
    runtime: stringAt(item, 'runtime'),
    state: isState(state) ? state : 'unknown',
    error: optionalString(item, 'error'),
    version: numberAt(item, 'version'),
    memory_mb: numberAt(item, 'memory_mb'),
    updated_at: optionalString(item, 'updated_at') ?? '',
    package: isObject(pkg) ? { sha256: stringAt(pkg, 'sha256'), size: numberAt(pkg, 'size') } : null,
    raw: item,
  };
}

export interface ErrorInfo {
  type: string;
  message: string;
}

export function errorInfo(value: unknown): ErrorInfo | null {
  if (!isObject(value)) return null;
  return { type: optionalString(value, 'type') ?? 'Error', message: optionalString(value, 'message') ?? '' };
}

export interface InvocationSummary {
  request_id: string;
  status: string;
  duration_ms: number;
  invoked_at: string;
  logs: string[];
  error: ErrorInfo | null;
}

export function invocationSummary(record: JsonObject): InvocationSummary {
  return {
    request_id: stringAt(record, 'request_id'),
    status: stringAt(record, 'status'),
    duration_ms: numberAt(record, 'duration_ms'),
    invoked_at: optionalString(record, 'invoked_at') ?? '',
    logs: stringsAt(record, 'logs'),
    error: errorInfo(record.error),
  };
}

// Typed client of the fnvm HTTP API. The record types are the server's own (src/store/types.ts).
import type { FunctionRecord, FunctionState, InvocationRecord, InvocationStatus } from '../../src/store/types.js';

export type { FunctionRecord, FunctionState, InvocationRecord, InvocationStatus };
export type Runtime = FunctionRecord['runtime'];

/** The body of POST /v1/functions and (all fields optional) PUT /v1/functions/{id}. */
export interface FunctionInput {
  name: string;
  runtime: Runtime;
  code: string;
  handler: string;
  vcpu: number;
  memory_mb: number;
  timeout_seconds: number;
  env_vars: Record<string, string>;
}

export interface ErrorInfo {
  type: string;
  message: string;
  stack: string;
}

export interface InvokeResult {
  request_id: string;
  status: InvocationStatus;
  duration_ms: number;
  response: unknown;
  logs: string[];
  error: ErrorInfo | null;
  cold_start: boolean;
  version: number;
}

export interface Health {
  status: string;
  accelerator: 'kvm' | 'tcg';
  accelerator_reason: string;
  vm_driver: string;
  pool: Record<string, unknown>;
  images: Record<string, unknown>;
  functions: number;
}

/** A non-2xx answer: the server's `{"error": "..."}` message and the HTTP status. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The API token, for a server started with FNVM_API_TOKEN: kept in this browser, sent as a bearer token
 * (and as ?access_token= on event streams, since EventSource cannot send headers).
 */
const tokenKey = 'fnvm.apiToken';
export const apiToken = {
  get: (): string => localStorage.getItem(tokenKey) ?? '',
  set: (token: string) => (token ? localStorage.setItem(tokenKey, token) : localStorage.removeItem(tokenKey)),
};
/** Dispatched on window when the server answers 401, so the app can ask for a token. */
export const unauthorizedEvent = 'fnvm:unauthorized';

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (apiToken.get()) headers.authorization = `Bearer ${apiToken.get()}`;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `cannot reach the fnvm server: ${(error as Error).message}`);
  }
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(response.status, `HTTP ${response.status}: not JSON: ${text.slice(0, 500)}`);
  }
  if (response.status === 401) window.dispatchEvent(new Event(unauthorizedEvent));
  if (!response.ok) {
    const message = (parsed as { error?: unknown } | undefined)?.error;
    throw new ApiError(response.status, typeof message === 'string' ? message : `HTTP ${response.status} ${response.statusText}`);
  }
  return parsed as T;
}

const fn = (id: string) => `/v1/functions/${encodeURIComponent(id)}`;

export const api = {
  list: async () => (await request<{ items: FunctionRecord[] }>('GET', '/v1/functions')).items,
  get: async (id: string) => (await request<{ item: FunctionRecord }>('GET', fn(id))).item,
  create: (input: FunctionInput) => request<{ id: string }>('POST', '/v1/functions', input),
  update: async (id: string, patch: Partial<FunctionInput>) => (await request<{ item: FunctionRecord }>('PUT', fn(id), patch)).item,
  remove: (id: string) => request<{ message: string }>('DELETE', fn(id)),
  invoke: (id: string, event: unknown) => request<InvokeResult>('POST', `${fn(id)}/invoke`, { event }),
  logs: async (id: string, limit: number, offset: number) =>
    (await request<{ items: InvocationRecord[] }>('GET', `${fn(id)}/logs?limit=${limit}&offset=${offset}`)).items,
  health: () => request<Health>('GET', '/v1/health'),
};

export type Change = { type: 'function'; item: FunctionRecord } | { type: 'deleted'; id: string };

/**
 * Follows server-sent function changes: `GET /v1/events` (every function) or `/v1/functions/{id}/events`
 * (one, starting with its current state). `onOpen` runs on every (re)connection, so a caller that keeps a
 * list reloads it then and misses nothing that changed while the stream was down. Returns a closer.
 */
export function watch(
  functionId: string | null,
  handlers: { onChange: (change: Change) => void; onOpen?: () => void; onConnection?: (live: boolean) => void },
): () => void {
  const path = functionId === null ? '/v1/events' : `${fn(functionId)}/events`;
  const token = apiToken.get();
  const source = new EventSource(token ? `${path}?access_token=${encodeURIComponent(token)}` : path);
  source.addEventListener('open', () => {
    handlers.onConnection?.(true);
    handlers.onOpen?.();
  });
  source.addEventListener('error', () => handlers.onConnection?.(false));
  source.addEventListener('function', (event) => {
    const { item } = JSON.parse((event as MessageEvent<string>).data) as { item: FunctionRecord };
    handlers.onChange({ type: 'function', item });
  });
  source.addEventListener('deleted', (event) => {
    const { deleted } = JSON.parse((event as MessageEvent<string>).data) as { deleted: string };
    handlers.onChange({ type: 'deleted', id: deleted });
  });
  return () => source.close();
}

export const inProgress = (state: FunctionState): boolean => state === 'creating' || state === 'booting' || state === 'deploying';

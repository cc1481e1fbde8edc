// Typed client of the fnvm HTTP API. The record types are the server's own (src/store/types.ts).
import type { PackageFile, PackageInfo } from '../../src/packages/types.js';
import type { FunctionRecord, FunctionState, InvocationRecord, InvocationStatus } from '../../src/store/types.js';
import type { FunctionMetrics, MetricsSummaryItem as FunctionFigures } from '../../src/functions/metrics.js';
import type { BucketSummary as MetricsTotals } from '../../src/stats/bucket.js';
import type { DeadLetter, QueueFigures } from '../../src/functions/async-queue.js';

// The metrics answers' types are the server's own (a type-only import: nothing of the server is bundled).
export type { DeadLetter, QueueFigures };
export type { FunctionFigures, FunctionMetrics, FunctionRecord, FunctionState, InvocationRecord, InvocationStatus, MetricsTotals, PackageFile, PackageInfo };
export type Runtime = FunctionRecord['runtime'];

/** A function's settings: everything of its definition but the source (code or package). */
export interface FunctionSettings {
  name: string;
  runtime: Runtime;
  handler: string;
  vcpu: number;
  memory_mb: number;
  timeout_seconds: number;
  env_vars: Record<string, string>;
}

/** The body of POST /v1/functions and (all fields optional) PUT /v1/functions/{id} for a single-file function. */
export interface FunctionInput extends FunctionSettings {
  code: string;
}

/** A definition with a deployment package (its base64 goes alongside); no handler: the server takes the runtime's. */
export interface PackageInput extends Omit<FunctionSettings, 'handler'> {
  handler?: string;
}

/**
 * `{...fields, "package": "<base64>"}` as a Blob: the base64 (up to 67 MiB) is spliced in, never parsed into or
 * copied through one string. Base64 has no character JSON escapes, so it goes between the quotes as it is.
 */
export function jsonWithPackage(fields: object, base64: Blob): Blob {
  const head = JSON.stringify(fields).slice(0, -1); // without its closing brace
  return new Blob([head, head === '{' ? '' : ',', '"package":"', base64, '"}'], { type: 'application/json' });
}

/** The handler a packaged function gets when none is given (the server's defaultPackageHandler). */
export const defaultPackageHandler = (runtime: Runtime): string => (runtime === 'python' ? 'lambda_function.lambda_handler' : 'index.handler');

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

const authHeaders = (): Record<string, string> => (apiToken.get() ? { authorization: `Bearer ${apiToken.get()}` } : {});

/** The answer of a JSON endpoint: its value, or an ApiError with the server's message. */
function parseAnswer<T>(status: number, statusText: string, text: string): T {
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(status, `HTTP ${status}: not JSON: ${text.slice(0, 500)}`);
  }
  if (status === 401) window.dispatchEvent(new Event(unauthorizedEvent));
  if (status < 200 || status > 299) {
    const message = (parsed as { error?: unknown } | undefined)?.error;
    throw new ApiError(status, typeof message === 'string' ? message : `HTTP ${status} ${statusText}`);
  }
  return parsed as T;
}

async function request<T>(method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<T> {
  let response: Response;
  const headers = { ...authHeaders(), ...extraHeaders };
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `cannot reach the fnvm server: ${(error as Error).message}`);
  }
  return parseAnswer<T>(response.status, response.statusText, await response.text());
}

/** Bytes sent of a request body so far. */
export interface UploadProgress {
  sent: number;
  total: number;
}

/**
 * A JSON request with upload progress: fetch reports none, XMLHttpRequest does. For package uploads, whose
 * body (the base64 of up to 50 MiB) takes a while to send.
 */
function requestWithProgress<T>(method: string, path: string, payload: Blob, onProgress: (progress: UploadProgress) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader('content-type', 'application/json');
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (event) => onProgress({ sent: event.loaded, total: event.lengthComputable ? event.total : payload.size }));
    xhr.addEventListener('load', () => {
      try {
        resolve(parseAnswer<T>(xhr.status, xhr.statusText, xhr.responseText));
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'cannot reach the fnvm server: the upload failed')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'the upload was aborted')));
    xhr.send(payload);
  });
}

/** GET of raw bytes (a package or one of its files). */
async function requestBytes(path: string): Promise<ArrayBuffer> {
  let response: Response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch (error) {
    throw new ApiError(0, `cannot reach the fnvm server: ${(error as Error).message}`);
  }
  if (!response.ok) parseAnswer<unknown>(response.status, response.statusText, await response.text());
  return response.arrayBuffer();
}

const fn = (id: string) => `/v1/functions/${encodeURIComponent(id)}`;

export const api = {
  list: async () => (await request<{ items: FunctionRecord[] }>('GET', '/v1/functions')).items,
  get: async (id: string) => (await request<{ item: FunctionRecord }>('GET', fn(id))).item,
  create: (input: FunctionInput) => request<{ id: string }>('POST', '/v1/functions', input),
  createPackaged: (input: PackageInput, base64: Blob, onProgress: (progress: UploadProgress) => void) =>
    requestWithProgress<{ id: string }>('POST', '/v1/functions', jsonWithPackage(input, base64), onProgress),
  update: async (id: string, patch: Partial<FunctionInput>) => (await request<{ item: FunctionRecord }>('PUT', fn(id), patch)).item,
  /** A new package for a packaged function: a 400 with the reason if it does not load (the old one keeps serving). */
  updatePackage: async (id: string, base64: Blob, onProgress: (progress: UploadProgress) => void) =>
    (await requestWithProgress<{ item: FunctionRecord }>('PUT', fn(id), jsonWithPackage({}, base64), onProgress)).item,
  packageUrl: (id: string) => `${fn(id)}/package`,
  packageZip: (id: string) => requestBytes(`${fn(id)}/package`),
  packageFiles: async (id: string) => (await request<{ files: PackageFile[] }>('GET', `${fn(id)}/package/files`)).files,
  /** One file's bytes; each path segment is encoded, the slashes kept (the route takes the rest of the path). */
  packageFile: (id: string, path: string) => requestBytes(`${fn(id)}/package/files/${path.split('/').map(encodeURIComponent).join('/')}`),
  remove: (id: string) => request<{ message: string }>('DELETE', fn(id)),
  invoke: (id: string, event: unknown) => request<InvokeResult>('POST', `${fn(id)}/invoke`, { event }),
  /** Queued, not run now: answers 202 with the event's request_id once it is stored. */
  invokeAsync: (id: string, event: unknown) => request<{ request_id: string; status: 'queued' }>('POST', `${fn(id)}/invoke`, { event }, { prefer: 'respond-async' }),
  queue: (id: string) => request<QueueFigures>('GET', `${fn(id)}/queue`),
  deadLetters: (id: string, limit: number) => request<{ items: DeadLetter[]; total: number }>('GET', `${fn(id)}/dead-letters?limit=${limit}`),
  /** Every dead letter, or those named, back to the queue. */
  redrive: async (id: string, requestIds?: string[]) =>
    (await request<{ redriven: number }>('POST', `${fn(id)}/dead-letters/redrive`, requestIds ? { request_ids: requestIds } : {})).redriven,
  discard: (id: string, requestId: string) => request<{ message: string }>('DELETE', `${fn(id)}/dead-letters/${encodeURIComponent(requestId)}`),
  logs: async (id: string, limit: number, offset: number) =>
    (await request<{ items: InvocationRecord[] }>('GET', `${fn(id)}/logs?limit=${limit}&offset=${offset}`)).items,
  health: () => request<Health>('GET', '/v1/health'),
  /** `since`: `1h`, `24h` or an ISO time; `step`: seconds. */
  metrics: (id: string, since: string, step: number) =>
    request<FunctionMetrics>('GET', `${fn(id)}/metrics?since=${encodeURIComponent(since)}&step=${step}`),
  /** Every function's figures since `since`. */
  figures: async (since: string) => (await request<{ items: FunctionFigures[] }>('GET', `/v1/metrics?since=${encodeURIComponent(since)}`)).items,
};

/** An event stream's URL, with the token as ?access_token= (EventSource cannot send headers). */
function streamUrl(path: string): string {
  const token = apiToken.get();
  return token ? `${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}` : path;
}

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
  const source = new EventSource(streamUrl(functionId === null ? '/v1/events' : `${fn(functionId)}/events`));
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

/**
 * Follows a function's new invocation records as they are committed (`GET /v1/functions/{id}/logs?follow=true`,
 * none of the old ones). `onOpen` runs on every (re)connection: what was committed while the stream was down
 * is not sent again, so a caller reloads then. A stream the browser gave up on (an HTTP error answer rather than
 * a dropped connection) is opened again after `retryMs`. `onDeleted` ends it. Returns a closer.
 */
export function followInvocations(
  functionId: string,
  handlers: { onRecord: (record: InvocationRecord) => void; onOpen?: () => void; onConnection?: (live: boolean) => void; onDeleted?: () => void },
  retryMs = 5000,
): () => void {
  let source: EventSource;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const open = () => {
    source = new EventSource(streamUrl(`${fn(functionId)}/logs?follow=true`));
    source.addEventListener('open', () => {
      handlers.onConnection?.(true);
      handlers.onOpen?.();
    });
    source.addEventListener('error', () => {
      handlers.onConnection?.(false);
      if (source.readyState === EventSource.CLOSED) retry = setTimeout(open, retryMs);
    });
    source.addEventListener('invocation', (event) => handlers.onRecord(JSON.parse((event as MessageEvent<string>).data) as InvocationRecord));
    source.addEventListener('deleted', () => {
      source.close();
      handlers.onDeleted?.();
    });
  };
  open();
  return () => {
    clearTimeout(retry);
    source.close();
  };
}

export const inProgress = (state: FunctionState): boolean => state === 'creating' || state === 'booting' || state === 'deploying';

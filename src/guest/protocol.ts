// Message shapes of guest/PROTOCOL.md, shared by every transport.
export type Runtime = 'node' | 'python';

export interface ErrorInfo {
  type: string;
  message: string;
  stack: string;
}

export interface PingResult {
  runtime: Runtime;
  runtime_version: string;
  agent_version: number;
  loaded_version: number | null;
}

export interface LoadRequest {
  code: string;
  handler: string;
  env: Record<string, string>;
  version: number;
  /**
   * 64 hex characters: 32 fresh random bytes from the host, different for every load. Every VM is a clone of
   * one snapshot, so without it clones share their random state (see guest/PROTOCOL.md, "Randomness").
   * Optional for compatibility only: the host always sends one.
   */
  seed?: string;
}

export interface LoadResult {
  version: number;
  duration_ms: number;
  logs: string[];
}

export interface InvokeRequest {
  request_id: string;
  event: unknown;
  timeout_ms: number;
}

export interface InvokeResult {
  status: 'success' | 'error';
  response: unknown;
  error: ErrorInfo | null;
  logs: string[];
  duration_ms: number;
  version: number;
}

export interface StatsResult {
  inflight: number;
  loaded_version: number | null;
  memory_rss: number;
}

export interface RequestMap {
  ping: { params: Record<string, never>; result: PingResult };
  load: { params: LoadRequest; result: LoadResult };
  invoke: { params: InvokeRequest; result: InvokeResult };
  stats: { params: Record<string, never>; result: StatsResult };
  settle: { params: Record<string, never>; result: { dropped_caches: boolean } };
}

export type RequestType = keyof RequestMap;

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: ErrorInfo };

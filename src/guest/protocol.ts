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
  /** The guest's wall clock (CLOCK_REALTIME) and CLOCK_MONOTONIC as the agent answered, in ms. */
  time_ms: number;
  monotonic_ms: number;
}

/**
 * Sent to a VM that was just restored from a snapshot (or booted, or resumed): it takes the host's time and
 * makes its random state its own before anything else runs in it (guest/PROTOCOL.md, "Clones").
 */
export interface RenewRequest {
  /** 64 hex characters: 32 fresh random bytes from the host. */
  seed: string;
  /** The host's wall clock when it sent the request, in ms since the epoch. */
  time_ms: number;
}

/** Steps the guest's wall clock by a correction the host measured (relative: transit time does not matter). */
export interface ClockRequest {
  adjust_ms: number;
}

export interface ClockResult {
  /** The guest's wall clock after the change. */
  time_ms: number;
  /** False for an agent running as a plain local process, which leaves the host's clock and kernel alone. */
  system: boolean;
}

export interface LoadRequest {
  /** The function's source; '' with `package`. */
  code: string;
  /** `name` or `file.name`; with `package`, `path/to/file.name`, a file in the package (Lambda's form). */
  handler: string;
  /**
   * The code is the package on the task disk, which the agent mounts read-only at /var/task (first such load)
   * and works in (guest/PROTOCOL.md, "Packages").
   */
  package?: boolean;
  env: Record<string, string>;
  version: number;
  /**
   * 64 hex characters, applied like renew's seed before the code runs. The host sends none: its VMs were
   * renewed when restored (guest/PROTOCOL.md, "Clones").
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
  renew: { params: RenewRequest; result: ClockResult };
  clock: { params: ClockRequest; result: ClockResult };
}

export type RequestType = keyof RequestMap;

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: ErrorInfo };

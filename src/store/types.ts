// What the domain stores, independent of the database behind it (SQLite or PostgreSQL).
import type { Runtime } from '../guest/protocol.js';
import type { PackageInfo } from '../packages/types.js';
import type { KeyedBucket } from '../stats/batch.js';
import type { Resolution } from '../stats/resolutions.js';

export type FunctionState = 'creating' | 'booting' | 'deploying' | 'ready' | 'error';
export type InvocationStatus = 'success' | 'error' | 'timeout';

export interface FunctionRecord {
  id: string;
  name: string;
  runtime: Runtime;
  /** A single-file function's source. Exactly one of `code` and `package` is present. */
  code?: string;
  /** A packaged function's zip, stored by content hash (src/packages). */
  package?: PackageInfo;
  handler: string;
  env_vars: Record<string, string>;
  timeout_seconds: number;
  memory_mb: number;
  vcpu: number;
  max_concurrency: number;
  vm_id: string | null;
  guest_ip: string | null;
  port: number | null;
  state: FunctionState;
  error: string | null;
  /** Increments on every code or configuration change. */
  version: number;
  created_at: string;
  updated_at: string;
  /** The invoked_at of the newest kept invocation record: null before the first (and with a retention of 0). */
  last_invoked_at: string | null;
  /** How long the current version's code took to initialise (load) in its VM, ms; null before it did. */
  init_ms: number | null;
  /** Disk this host uses for the function's snapshot (SnapStart); null without one. */
  snapshot_bytes: number | null;
  /** Free text for people ('' when none). */
  description: string;
  /** The IAM role a Lambda client gave (kept and reported; fnvm has no IAM). */
  lambda_role: string | null;
  /** The Lambda runtime identifier a Lambda client gave (nodejs20.x...); null: reported from `runtime`. */
  lambda_runtime: string | null;
  /** Asynchronous invocations: retries after a function error or timeout (0-2), and how old an event may get. */
  async_max_retries: number;
  async_max_event_age_seconds: number;
  /** When either was last set explicitly (null: never, Lambda's GetFunctionEventInvokeConfig is then a 404). */
  async_configured_at: string | null;
  /** In a fleet, the host that holds it (null while it is being placed, and always on a single host). */
  host_id: string | null;
}

export interface InvocationRecord {
  id: string;
  function_id: string;
  request_id: string;
  status: InvocationStatus;
  duration_ms: number;
  invoked_at: string;
  version: number;
  cold_start: boolean;
  logs: string[];
  error: { type: string; message: string; stack: string } | null;
  /** 1 for a synchronous invocation; an asynchronous event's attempt number (its attempts share request_id). */
  attempt: number;
  async: boolean;
}

/** Lambda's defaults for asynchronous invocations. */
export const asyncDefaults = { maxRetries: 2, maxEventAgeSeconds: 21_600 } as const;

export type AsyncEventState = 'queued' | 'dead';
/** Why an event went to the dead-letter list. */
export type DeadReason = 'RetriesExhausted' | 'EventAgeExceeded';

/** An accepted asynchronous invocation, until it succeeds (then it is deleted) or lands in the dead-letter list. */
export interface AsyncEvent {
  request_id: string;
  function_id: string;
  /** The event as JSON text. */
  payload: string;
  state: AsyncEventState;
  /** Attempts started (each numbers its invocation record); a started attempt counts even if the server died in it. */
  attempts: number;
  /** Function errors and timeouts since it was accepted or redriven (what the retry limit counts). */
  failures: number;
  /** Unix ms: accepted (or redriven): its age counts from here. */
  enqueued_at: number;
  /** Unix ms: when it may run next. */
  next_attempt_at: number;
  last_error: { type: string; message: string } | null;
  dead_reason: DeadReason | null;
  /** Unix ms of the last change (for a dead letter: when it failed). */
  updated_at: number;
}

/** An event without its payload: what the queue keeps in memory (the payload is read from the store per attempt). */
export type QueuedEvent = Omit<AsyncEvent, 'payload'>;

/** What an async attempt's record commits with: the event deleted (it succeeded) or saved as it is now. */
export type EventSettlement = { delete: string } | { save: QueuedEvent };

type Defaulted = 'description' | 'lambda_role' | 'lambda_runtime' | 'async_max_retries' | 'async_max_event_age_seconds' | 'async_configured_at';
/** The defaulted fields are '', null or the async defaults (asyncDefaults) when absent. */
export type NewFunction = Omit<FunctionRecord, 'created_at' | 'updated_at' | 'last_invoked_at' | 'init_ms' | 'snapshot_bytes' | 'host_id' | Defaulted>
  & Partial<Pick<FunctionRecord, Defaulted>>;
/** A patch with `code` drops the package and one with `package` drops the code: a function has one or the other. */
export type FunctionPatch = Partial<Omit<FunctionRecord, 'id' | 'created_at' | 'updated_at' | 'last_invoked_at' | 'host_id'>>;

export class NameTakenError extends Error {
  override name = 'NameTakenError';
  constructor(readonly functionName: string) {
    super(`a function named "${functionName}" already exists`);
  }
}

/** Statistics buckets of one resolution with from <= start < to (unix seconds), of one function or of every one. */
export interface StatsQuery {
  resolution: Resolution;
  from: number;
  to: number;
  functionId?: string;
}

export interface Store {
  /** Inserts; throws NameTakenError if the name is used. Timestamps are set by the store. */
  createFunction(fn: NewFunction): Promise<FunctionRecord>;
  getFunction(id: string): Promise<FunctionRecord | undefined>;
  getFunctionByName(name: string): Promise<FunctionRecord | undefined>;
  /** Oldest first. */
  listFunctions(): Promise<FunctionRecord[]>;
  /** Applies the patch and bumps updated_at; throws NameTakenError on a name clash; undefined if gone. */
  updateFunction(id: string, patch: FunctionPatch): Promise<FunctionRecord | undefined>;
  /** Deletes the function, all its invocation records and its statistics; false if it did not exist. */
  deleteFunction(id: string): Promise<boolean>;
  /**
   * Records one invocation (its invoked_at becomes the function's last_invoked_at), adds it to the function's
   * statistics (a minute and an hour bucket) and trims that function's history to the newest `retention`
   * records (the statistics keep it), with an async attempt's event settlement, in one transaction, which
   * concurrent calls may share; resolves once it is committed.
   */
  recordInvocation(invocation: InvocationRecord, retention: number, settle?: EventSettlement): Promise<void>;
  /** Stores a new event (group-committed like records); resolves once it is durable. */
  enqueueEvent(event: AsyncEvent): Promise<void>;
  /**
   * Claims a queued event for an attempt: writes the claim (`event`, its attempt counted) with a lease for `host`
   * of `leaseMs` on the database's clock, unless another host's lease on it is live: then false, nothing written.
   * In a fleet, no two hosts run one event at once, and a dead host's leases run out (PostgreSQL: row locks with
   * SKIP LOCKED). A save or settlement ends the lease.
   */
  claimEvent(event: QueuedEvent, host: string, leaseMs: number): Promise<boolean>;
  /** Writes an event's mutable fields as given, never its payload (group-committed); nothing if it is gone. */
  saveEvent(event: QueuedEvent): Promise<void>;
  deleteEvent(requestId: string): Promise<boolean>;
  getEvent(requestId: string): Promise<AsyncEvent | undefined>;
  /** An event's payload; undefined if it is gone. */
  eventPayload(requestId: string): Promise<string | undefined>;
  /** Every queued event (or one function's) without its payload, for the dispatcher at start (any order). */
  listQueuedEvents(functionId?: string): Promise<QueuedEvent[]>;
  /** A function's dead letters with their payloads, the latest failure first. */
  listDeadLetters(functionId: string, limit: number, offset: number): Promise<AsyncEvent[]>;
  /** The same without payloads (what a redrive needs). */
  listDeadEvents(functionId: string, limit: number, offset: number): Promise<QueuedEvent[]>;
  /** Dead letters per function id (of every function, or one). */
  countDeadLetters(functionId?: string): Promise<Map<string, number>>;
  /** Newest first. */
  listInvocations(functionId: string, limit: number, offset: number): Promise<InvocationRecord[]>;
  countInvocations(functionId: string): Promise<number>;
  /** Oldest first (by function within a start). */
  readStats(query: StatsQuery): Promise<KeyedBucket[]>;
  /**
   * Deletes statistics past their retention (src/stats/resolutions.ts: minute rows 25 h, hour rows 31 days) as of
   * `nowMs` (default: the store's clock); resolves to the number of rows deleted. Stores also prune on their own.
   */
  pruneStats(nowMs?: number): Promise<number>;
  close(): Promise<void>;
}

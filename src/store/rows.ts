// The tables as both stores see them, and the codecs between records and rows. SQLite and PostgreSQL keep the
// same column encodings (JSON as text, booleans as 0/1, unix ms as integers), so these serve both.
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { KeyedBucket } from '../stats/batch.js';
import type { StatsBucket } from '../stats/bucket.js';
import { decodeHistogram, encodeHistogram } from '../stats/histogram.js';
import { isResolution } from '../stats/resolutions.js';
import { asyncDefaults, type AsyncEvent, type FunctionPatch, type FunctionRecord, type InvocationRecord, type NewFunction, type QueuedEvent } from './types.js';

// Row types derive from the records so the two cannot drift apart; only encoded columns differ.
export interface FunctionsTable extends Omit<FunctionRecord, 'env_vars' | 'last_invoked_at' | 'code' | 'package'> {
  env_vars: string;
  /** NOT NULL since 0001: '' for a packaged function. */
  code: string;
  package_sha256: string | null;
  package_size: number | null;
  package_unpacked_size: number | null;
  package_files: number | null;
  /** The generation of the host's registration its claim was made under (src/fleet/registry.ts). */
  host_generation: number | null;
}

/** The invocations table's columns except seq: the record with its encoded fields. */
export interface InvocationRow extends Omit<InvocationRecord, 'cold_start' | 'logs' | 'error' | 'async'> {
  cold_start: number;
  logs: string;
  error: string | null;
  async: number;
}

export interface InvocationsTable extends InvocationRow {
  seq: Generated<number>;
}

/** The async_events table's columns. */
export interface EventRow extends Omit<AsyncEvent, 'last_error'> {
  last_error: string | null;
}

/** A statistics bucket as a row: its key, its counts, its histogram in the stored form. */
export interface StatsRow extends Omit<StatsBucket, 'histogram'> {
  function_id: string;
  resolution: number;
  bucket_start: number;
  histogram: string;
}

export interface Tables {
  functions: FunctionsTable;
  invocations: InvocationsTable;
  invocation_stats: StatsRow;
  async_events: EventRow & EventLease;
}

/**
 * A functions row as read, with the derived last_invoked_at. On PostgreSQL it also carries `rowid`, the column
 * that stands in for SQLite's implicit one (migration 0001), which is no field of the record.
 */
export type FunctionRow = Selectable<FunctionsTable> & { last_invoked_at: string | null; rowid?: unknown };

/** ISO-8601 UTC with milliseconds: sorts as text in time order. */
export function timestamp(): string {
  return new Date().toISOString();
}

function parseJson<T>(text: string): T {
  return JSON.parse(text) as T;
}

export function newFunctionRow(fn: NewFunction, now: string): Insertable<FunctionsTable> {
  const { code: _code, package: _package, ...fields } = fn;
  return {
    ...fields,
    code: '',
    ...sourceColumns(fn),
    env_vars: JSON.stringify(fn.env_vars),
    created_at: now,
    updated_at: now,
    init_ms: null,
    snapshot_bytes: null,
    description: fn.description ?? '',
    lambda_role: fn.lambda_role ?? null,
    lambda_runtime: fn.lambda_runtime ?? null,
    async_max_retries: fn.async_max_retries ?? asyncDefaults.maxRetries,
    async_max_event_age_seconds: fn.async_max_event_age_seconds ?? asyncDefaults.maxEventAgeSeconds,
    async_configured_at: fn.async_configured_at ?? null,
    host_id: null,
    host_generation: null,
  };
}

export function rowToFunction(row: FunctionRow): FunctionRecord {
  const {
    rowid: _rowid, host_generation: _generation, code, package_sha256: sha256, package_size: size, package_unpacked_size: unpacked, package_files: files, ...rest
  } = row;
  const source = sha256 === null
    ? { code }
    : { package: { sha256, size: size ?? 0, unpacked_size: unpacked ?? 0, files: files ?? 0 } };
  return { ...rest, ...source, env_vars: parseJson<FunctionRecord['env_vars']>(row.env_vars) };
}

/** The columns of a function's source: its code, or its package (and then code is ''). */
function sourceColumns(source: Pick<FunctionPatch, 'code' | 'package'>) {
  const pkg = source.package;
  if (pkg) return { code: '', package_sha256: pkg.sha256, package_size: pkg.size, package_unpacked_size: pkg.unpacked_size, package_files: pkg.files };
  if (source.code !== undefined) return { code: source.code, package_sha256: null, package_size: null, package_unpacked_size: null, package_files: null };
  return {};
}

export function patchToRow(patch: FunctionPatch): Updateable<FunctionsTable> {
  const { env_vars, code: _code, package: _package, ...rest } = patch;
  const row = { ...rest, ...sourceColumns(patch) };
  return env_vars === undefined ? row : { ...row, env_vars: JSON.stringify(env_vars) };
}

export function invocationToRow(invocation: InvocationRecord): InvocationRow {
  return {
    ...invocation,
    cold_start: invocation.cold_start ? 1 : 0,
    logs: JSON.stringify(invocation.logs),
    error: invocation.error === null ? null : JSON.stringify(invocation.error),
    async: invocation.async ? 1 : 0,
  };
}

export function rowToInvocation(row: Selectable<InvocationsTable>): InvocationRecord {
  const { seq: _seq, cold_start, logs, error, async, ...rest } = row;
  return {
    ...rest,
    async: async === 1,
    cold_start: cold_start === 1,
    logs: parseJson<InvocationRecord['logs']>(logs),
    error: error === null ? null : parseJson<NonNullable<InvocationRecord['error']>>(error),
  };
}

/** Who runs an event's attempt, until when (not part of the event: the store's concern). */
export interface EventLease {
  lease_host: string | null;
  lease_expires_at: number | null;
}

/** An event's columns but its payload: what saves write (never the payload) and the queue reads. */
export type QueuedEventRow = Omit<EventRow, 'payload'>;

/** Every column of an event but its payload, request_id first. */
export const queuedEventColumns = [
  'request_id', 'function_id', 'state', 'attempts', 'failures', 'enqueued_at', 'next_attempt_at', 'last_error', 'dead_reason', 'updated_at',
] as const satisfies ReadonlyArray<keyof QueuedEventRow>;

/** An event's columns, with or without its payload. */
export function eventToRow<Event extends QueuedEvent>(event: Event): Omit<Event, 'last_error'> & Pick<EventRow, 'last_error'> {
  return { ...event, last_error: event.last_error === null ? null : JSON.stringify(event.last_error) };
}

export function rowToEvent<Row extends Pick<EventRow, 'last_error'>>(row: Row): Omit<Row, 'last_error'> & Pick<AsyncEvent, 'last_error'> {
  return { ...row, last_error: row.last_error === null ? null : parseJson<NonNullable<AsyncEvent['last_error']>>(row.last_error) };
}

export function rowToBucket(row: StatsRow): KeyedBucket {
  const { function_id, resolution, bucket_start, histogram, ...counts } = row;
  if (!isResolution(resolution)) throw new Error(`invocation_stats: unknown resolution ${resolution}`);
  return { function_id, resolution, start: bucket_start, bucket: { ...counts, histogram: decodeHistogram(histogram) } };
}

export function bucketToRow({ function_id, resolution, start, bucket }: KeyedBucket): StatsRow {
  const { histogram, ...counts } = bucket;
  return { function_id, resolution, bucket_start: start, ...counts, histogram: encodeHistogram(histogram) };
}

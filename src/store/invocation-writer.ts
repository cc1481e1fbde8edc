// Group commit for invocation records, the one write on the invoke path, and for the asynchronous queue's
// writes (accepting, claiming, settling events). Writes that arrive within one turn of the event loop
// (invocations finishing together) go into one transaction, which costs about what one alone does; each
// caller's promise settles only after the commit that holds its write, so no answer goes out before its record
// is durable (WAL, synchronous=NORMAL: it survives a crash of the process). The same transaction adds the
// batch to the function's minute and hour statistics (stats-table.ts), and an async attempt's record commits
// with its event's settlement, so a crash never leaves a success recorded with its event still queued.
import type Database from 'better-sqlite3';
import { BatchBuckets } from '../stats/batch.js';
import { StatsUpserter } from './stats-table.js';
import type { AsyncEvent, EventSettlement, InvocationRecord, QueuedEvent } from './types.js';

/** The invocations table's columns except seq, as bound parameters: the record with its encoded fields. */
export interface InvocationRow extends Omit<InvocationRecord, 'cold_start' | 'logs' | 'error' | 'async'> {
  cold_start: number;
  logs: string;
  error: string | null;
  async: number;
}

/** The async_events table's columns as bound parameters. */
export interface EventRow extends Omit<AsyncEvent, 'last_error'> {
  last_error: string | null;
}

/** One write of a batch. */
export type Write =
  | { kind: 'record'; invocation: InvocationRecord; retention: number; settle?: EventSettlement }
  | { kind: 'enqueue'; event: AsyncEvent }
  | { kind: 'save'; event: QueuedEvent };

interface Queued {
  write: Write;
  resolve: () => void;
  reject: (error: unknown) => void;
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

/** An event's columns (a saved event has no payload: saves never write it). */
export function eventToRow<Event extends QueuedEvent>(event: Event): Omit<Event, 'last_error'> & Pick<EventRow, 'last_error'> {
  return { ...event, last_error: event.last_error === null ? null : JSON.stringify(event.last_error) };
}

export class InvocationWriter {
  private queue: Queued[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly commitBatch: (batch: Queued[]) => void;

  /**
   * `exclusive` runs a synchronous write while no other transaction is open on the connection (the writer
   * shares it with Kysely, whose transactions span awaits: a BEGIN of ours inside one would only nest in it).
   */
  constructor(sqlite: Database.Database, private readonly exclusive: (write: () => void) => Promise<void>) {
    const insert = sqlite.prepare<[InvocationRow]>(
      `INSERT INTO invocations (id, function_id, request_id, status, duration_ms, invoked_at, version, cold_start, logs, error, attempt, async)
       VALUES (@id, @function_id, @request_id, @status, @duration_ms, @invoked_at, @version, @cold_start, @logs, @error, @attempt, @async)`,
    );
    const enqueue = sqlite.prepare<[EventRow]>(
      `INSERT INTO async_events (request_id, function_id, payload, state, attempts, failures, enqueued_at, next_attempt_at, last_error, dead_reason, updated_at)
       VALUES (@request_id, @function_id, @payload, @state, @attempts, @failures, @enqueued_at, @next_attempt_at, @last_error, @dead_reason, @updated_at)`,
    );
    const save = sqlite.prepare<[Omit<EventRow, 'payload'>]>(
      `UPDATE async_events SET state = @state, attempts = @attempts, failures = @failures, enqueued_at = @enqueued_at,
         next_attempt_at = @next_attempt_at, last_error = @last_error, dead_reason = @dead_reason, updated_at = @updated_at
       WHERE request_id = @request_id`,
    );
    const remove = sqlite.prepare<[string]>('DELETE FROM async_events WHERE request_id = ?');
    const settle = (settlement: EventSettlement) => {
      if ('delete' in settlement) remove.run(settlement.delete);
      else save.run(eventToRow(settlement.save));
    };
    // Everything up to the newest record beyond the kept ones (NULL, deleting nothing, if there are not that many).
    const trim = sqlite.prepare<[string, string, number]>(
      `DELETE FROM invocations WHERE function_id = ? AND seq <= (
         SELECT seq FROM invocations WHERE function_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
    );
    const stats = new StatsUpserter(sqlite);
    this.commitBatch = sqlite.transaction((batch: Queued[]) => {
      const retentions = new Map<string, number>();
      const buckets = new BatchBuckets();
      for (const { write } of batch) {
        if (write.kind === 'enqueue') {
          enqueue.run(eventToRow(write.event));
          continue;
        }
        if (write.kind === 'save') {
          save.run(eventToRow(write.event));
          continue;
        }
        const { invocation, retention } = write;
        const row = invocationToRow(invocation);
        insert.run(row);
        if (write.settle) settle(write.settle);
        buckets.count(invocation);
        // One trim per function per batch, to the smallest retention any of its records asked for.
        retentions.set(row.function_id, Math.min(retention, retentions.get(row.function_id) ?? retention));
      }
      for (const [functionId, retention] of retentions) trim.run(functionId, functionId, retention);
      for (const bucket of buckets.values()) stats.add(bucket);
    });
  }

  /** Resolves once the write is committed; rejects if it cannot be (e.g. its function does not exist). */
  write(write: Write): Promise<void> {
    return new Promise((resolve, reject) => {
      // setImmediate runs after the I/O callbacks of this turn: every reply that arrived with this one joins it.
      if (this.queue.push({ write, resolve, reject }) === 1) setImmediate(() => this.flush());
    });
  }

  /** Resolves when every record queued so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.queue.length > 0) await new Promise(setImmediate);
    await this.flushing;
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.exclusive(() => this.commit(batch)).catch((error: unknown) => {
      for (const queued of batch) queued.reject(error);
    });
  }

  private commit(batch: Queued[]): void {
    try {
      this.commitBatch(batch);
    } catch (error) {
      // One bad record (a function deleted meanwhile) rolls the batch back: the others are retried alone.
      if (batch.length > 1) for (const queued of batch) this.commit([queued]);
      else batch[0]?.reject(error);
      return;
    }
    for (const queued of batch) queued.resolve();
  }
}

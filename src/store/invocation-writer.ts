// Group commit for invocation records, the one write on the invoke path, and for the asynchronous queue's
// writes (accepting, claiming, settling events), whatever the database. Writes that arrive while no batch is
// being committed, within one turn of the event loop (invocations finishing together), and those that arrive
// while one is, go into the next transaction, which costs about what one alone does; each caller's promise
// settles only after the commit that holds its write, so no answer goes out before its record is durable. The
// same transaction adds the batch to the functions' minute and hour statistics, and an async attempt's record
// commits with its event's settlement, so a crash never leaves a success recorded with its event still queued.
// What a store runs for a batch is its BatchPlan (sqlite-writer.ts, postgres-writer.ts).
import { BatchBuckets, type KeyedBucket } from '../stats/batch.js';
import { eventToRow, invocationToRow, type EventRow, type InvocationRow, type QueuedEventRow } from './rows.js';
import type { AsyncEvent, EventSettlement, InvocationRecord, QueuedEvent } from './types.js';

/** One write of a batch. */
export type Write =
  | { kind: 'record'; invocation: InvocationRecord; retention: number; settle?: EventSettlement }
  | { kind: 'enqueue'; event: AsyncEvent }
  | { kind: 'save'; event: QueuedEvent };

/** A change to async_events, in the order the batch asked for it (a save and a settlement may touch one event). */
export type EventChange = { insert: EventRow } | { update: QueuedEventRow } | { delete: string };

/** A batch as rows, in an order that locks rows the same way in every transaction (see postgres-writer.ts). */
export interface BatchPlan {
  /** In call order: their seq numbers the records in it. */
  invocations: InvocationRow[];
  events: EventChange[];
  /** One trim per function, to the smallest retention any of its records asked for; by function id. */
  trims: { functionId: string; retention: number }[];
  /** Every minute and hour bucket the records touch, each folded once; by function, resolution, start. */
  buckets: KeyedBucket[];
}

export function planBatch(writes: readonly Write[]): BatchPlan {
  const plan: BatchPlan = { invocations: [], events: [], trims: [], buckets: [] };
  const retentions = new Map<string, number>();
  const buckets = new BatchBuckets();
  for (const write of writes) {
    if (write.kind === 'enqueue') {
      plan.events.push({ insert: eventToRow(write.event) });
      continue;
    }
    if (write.kind === 'save') {
      plan.events.push({ update: eventToRow(write.event) });
      continue;
    }
    const { invocation, retention, settle } = write;
    plan.invocations.push(invocationToRow(invocation));
    if (settle) plan.events.push('delete' in settle ? { delete: settle.delete } : { update: eventToRow(settle.save) });
    buckets.count(invocation);
    retentions.set(invocation.function_id, Math.min(retention, retentions.get(invocation.function_id) ?? retention));
  }
  plan.trims = [...retentions].sort(([a], [b]) => compare(a, b)).map(([functionId, retention]) => ({ functionId, retention }));
  plan.buckets = [...buckets.values()].sort((a, b) => compare(a.function_id, b.function_id) || a.resolution - b.resolution || a.start - b.start);
  return plan;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Queued {
  write: Write;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class InvocationWriter {
  private queue: Queued[] = [];
  private committing: Promise<void> | null = null;

  /**
   * `commit` runs the writes in one transaction: all of them commit, or it throws and none do. A batch that
   * failed is retried write by write if `retryAlone` says the error allows it.
   */
  constructor(
    private readonly commit: (writes: readonly Write[]) => Promise<void>,
    private readonly retryAlone: (error: unknown) => boolean = () => true,
  ) {}

  /** Resolves once the write is committed; rejects if it cannot be (e.g. its function does not exist). */
  write(write: Write): Promise<void> {
    return new Promise((resolve, reject) => {
      // setImmediate runs after the I/O callbacks of this turn: every reply that arrived with this one joins it.
      if (this.queue.push({ write, resolve, reject }) === 1 && this.committing === null) setImmediate(() => this.flush());
    });
  }

  /** Resolves when every write queued so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.committing !== null) await (this.committing ?? new Promise(setImmediate));
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.committing = this.settle(batch).finally(() => {
      this.committing = null;
      // What arrived meanwhile is the next batch; setImmediate lets the callers just resolved add theirs.
      if (this.queue.length > 0) setImmediate(() => this.flush());
    });
  }

  private async settle(batch: Queued[]): Promise<void> {
    try {
      await this.commit(batch.map((queued) => queued.write));
    } catch (error) {
      // One bad write (a function deleted meanwhile) rolls the batch back: the others are retried alone.
      if (batch.length > 1 && this.retryAlone(error)) for (const queued of batch) await this.settle([queued]);
      else for (const queued of batch) queued.reject(error);
      return;
    }
    for (const queued of batch) queued.resolve();
  }
}

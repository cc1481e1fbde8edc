// The asynchronous invocation queue: events accepted durably (committed before the 202), run at least once,
// retried by the policy (async-policy.ts) and, once they give up, kept as dead letters that can be redriven.
// An event's life: waiting -> running -> deleted (succeeded) | waiting (retry, or a refusal released) | dead;
// dead -> waiting (redrive). The store holds `queued` (waiting or running) and `dead`; a started attempt is
// committed before it runs (claim), so a kill -9 mid-attempt still counts it and at most 1 + retries run.
// Memory holds events without their payloads (up to 1 MiB each): an attempt reads its payload from the store.
import { Limiter } from '../limiter.js';
import type { AsyncEvent, EventSettlement, QueuedEvent, Store } from '../store/types.js';
import { afterFailure, asyncShare, isTooOld, refusalDelayMs, retryDelayMs, type AsyncSettings } from './async-policy.js';

export type AsyncOutcome = 'accepted' | 'succeeded' | 'retried' | 'dead' | 'redriven';

/** How an attempt ended, as the service saw it: user code ran (and succeeded or failed), or it was refused first. */
export interface AttemptResult {
  status: 'success' | 'error' | 'timeout';
  error: { type: string; message: string } | null;
}

/**
 * Runs one attempt: the service invokes the function and commits the invocation record together with
 * `settle(result)`'s settlement, then resolves. It throws, writing nothing, when it refused before user code ran.
 */
export type RunAttempt = (event: QueuedEvent, settle: (result: AttemptResult) => EventSettlement) => Promise<void>;

export interface QueueSettings extends AsyncSettings {
  /** How long a claimed attempt holds its event: the function's timeout and a margin. */
  attemptLeaseMs: number;
}

export interface AsyncQueueOptions {
  store: Store;
  /** The host its attempts' leases name (a fleet's host id). */
  host?: string;
  /** A function's async settings; undefined once it is gone. */
  settings: (functionId: string) => QueueSettings | undefined;
  /** The function's invocations in flight (sync and async) and its max_concurrency. */
  capacity: (functionId: string) => { inflight: number; max: number } | undefined;
  run: RunAttempt;
  /** Events accepted and not yet settled per function (FNVM_ASYNC_QUEUE_DEPTH). */
  maxDepth: number;
  /** Attempts running at once on the host, over every function. */
  maxRunning: number;
  onOutcome: (functionId: string, outcome: AsyncOutcome) => void;
  log: (message: string) => void;
  now?: () => number;
}

export interface QueueFigures {
  /** Waiting or running. */
  queued: number;
  running: number;
  dead_letters: number;
  /** Unix ms at which the oldest queued event was accepted (or redriven); null when none is queued. */
  oldest_queued_at: number | null;
}

interface Settled {
  event: QueuedEvent;
  outcome: AsyncOutcome;
}

interface FunctionQueue {
  /** By next_attempt_at, earliest first. */
  waiting: QueuedEvent[];
  running: Map<string, QueuedEvent>;
  /** Enqueues committing now: they count toward the depth limit before they are queued. */
  accepting: number;
  dead: number;
  /** Redrives and discards of dead letters, one at a time (two at once could both requeue one letter). */
  deadLetterEdits: Limiter;
  /** Refusals in a row per event (in memory: a restart starts the backoff over). */
  refusals: Map<string, number>;
}

/** A dead letter as the API shows it. */
export interface DeadLetter {
  request_id: string;
  event: unknown;
  attempts: number;
  error: { type: string; message: string } | null;
  reason: AsyncEvent['dead_reason'];
  enqueued_at: string;
  failed_at: string;
}

export function deadLetterOf(event: AsyncEvent): DeadLetter {
  return {
    request_id: event.request_id,
    event: JSON.parse(event.payload),
    attempts: event.attempts,
    error: event.last_error,
    reason: event.dead_reason,
    enqueued_at: new Date(event.enqueued_at).toISOString(),
    failed_at: new Date(event.updated_at).toISOString(),
  };
}

/** An event another host holds a lease on is looked at again after this. */
const leasedElsewhereRetryMs = 1000;

export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class AsyncQueue {
  private readonly queues = new Map<string, FunctionQueue>();
  private readonly attempts = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private running = 0;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: AsyncQueueOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Takes over the store's queued events at start (or one function's, when a fleet host adopts it). One whose
   * last attempt was cut off by a stop, after which it has no retry left, becomes a dead letter now (its attempt
   * counted when it started).
   */
  async load(onlyFunctionId?: string): Promise<void> {
    for (const [functionId, dead] of await this.options.store.countDeadLetters(onlyFunctionId)) this.queueOf(functionId).dead = dead;
    for (const event of await this.options.store.listQueuedEvents(onlyFunctionId)) {
      const settings = this.options.settings(event.function_id);
      if (!settings) continue; // its function is gone (the store deletes its events with it)
      if (event.failures > settings.maxRetries) {
        await this.bury({ ...event, last_error: event.last_error ?? interrupted(event) }, 'RetriesExhausted');
        continue;
      }
      insertByTime(this.queueOf(event.function_id).waiting, event);
    }
    this.pump();
  }

  /** Commits a new event, then queues it; QueueFullError beyond the function's depth limit. */
  async enqueue(functionId: string, requestId: string, payload: string): Promise<void> {
    const queue = this.queueOf(functionId);
    if (queue.waiting.length + queue.running.size + queue.accepting >= this.options.maxDepth) {
      throw new QueueFullError(`the function's asynchronous queue holds ${this.options.maxDepth} events (FNVM_ASYNC_QUEUE_DEPTH)`);
    }
    const now = this.now();
    const event: QueuedEvent = {
      request_id: requestId, function_id: functionId, state: 'queued', attempts: 0, failures: 0,
      enqueued_at: now, next_attempt_at: now, last_error: null, dead_reason: null, updated_at: now,
    };
    queue.accepting += 1;
    try {
      await this.options.store.enqueueEvent({ ...event, payload });
    } finally {
      queue.accepting -= 1;
    }
    if (this.queues.get(functionId) !== queue) return; // deleted meanwhile
    insertByTime(queue.waiting, event);
    this.options.onOutcome(functionId, 'accepted');
    this.pump();
  }

  /** Back to the queue as new (failures 0, a new age); attempt numbers continue. `ids` absent: every dead letter. */
  redrive(functionId: string, ids?: string[]): Promise<number> {
    const queue = this.queueOf(functionId);
    return queue.deadLetterEdits.run(() => this.redriveNow(functionId, queue, ids));
  }

  /** Deletes one dead letter; false if the function has no such dead letter. */
  discard(functionId: string, requestId: string): Promise<boolean> {
    const queue = this.queueOf(functionId);
    return queue.deadLetterEdits.run(async () => {
      const event = await this.options.store.getEvent(requestId);
      if (!event || event.function_id !== functionId || event.state !== 'dead') return false;
      if (!(await this.options.store.deleteEvent(requestId))) return false;
      queue.dead -= 1;
      return true;
    });
  }

  private async redriveNow(functionId: string, queue: FunctionQueue, ids: string[] | undefined): Promise<number> {
    const wanted = ids && new Set(ids);
    let redriven = 0;
    for (let offset = 0; ;) {
      const page = await this.options.store.listDeadEvents(functionId, 500, offset);
      if (page.length === 0) break;
      for (const event of page) {
        if (wanted && !wanted.has(event.request_id)) {
          offset += 1;
          continue;
        }
        const now = this.now();
        const again: QueuedEvent = { ...event, state: 'queued', failures: 0, enqueued_at: now, next_attempt_at: now, last_error: null, dead_reason: null, updated_at: now };
        await this.options.store.saveEvent(again);
        queue.dead -= 1;
        insertByTime(queue.waiting, again);
        redriven += 1;
        this.options.onOutcome(functionId, 'redriven');
      }
    }
    this.pump();
    return redriven;
  }

  figures(functionId: string): QueueFigures {
    const queue = this.queues.get(functionId);
    if (!queue) return { queued: 0, running: 0, dead_letters: 0, oldest_queued_at: null };
    let oldest: number | null = null;
    for (const event of [...queue.waiting, ...queue.running.values()]) oldest = oldest === null ? event.enqueued_at : Math.min(oldest, event.enqueued_at);
    return { queued: queue.waiting.length + queue.running.size, running: queue.running.size, dead_letters: queue.dead, oldest_queued_at: oldest };
  }

  /** The function's events are gone with it (the store deleted them); attempts running finish unrecorded. */
  drop(functionId: string): void {
    this.queues.delete(functionId);
  }

  /** A slot may have freed up (an invocation ended): start what can start. */
  poke(): void {
    if (!this.closed) this.pump();
  }

  /** Starts nothing more and waits for the attempts running to finish and record. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.attempts.size > 0) await Promise.allSettled([...this.attempts]);
  }

  private queueOf(functionId: string): FunctionQueue {
    let queue = this.queues.get(functionId);
    if (!queue) this.queues.set(functionId, (queue = { waiting: [], running: new Map(), accepting: 0, dead: 0, refusals: new Map(), deadLetterEdits: new Limiter(1) }));
    return queue;
  }

  /** Starts every due event that has a slot, one function at a time in turn, then waits for the next due one. */
  private pump(): void {
    if (this.closed) return;
    const now = this.now();
    let started = true;
    while (started && this.running < this.options.maxRunning) {
      started = false;
      for (const [functionId, queue] of this.queues) {
        if (this.running >= this.options.maxRunning) break;
        const head = queue.waiting[0];
        if (!head || head.next_attempt_at > now || !this.hasSlot(functionId, queue)) continue;
        queue.waiting.shift();
        this.start(functionId, queue, head);
        started = true;
      }
    }
    this.armTimer(now);
  }

  private hasSlot(functionId: string, queue: FunctionQueue): boolean {
    const capacity = this.options.capacity(functionId);
    return capacity !== undefined && capacity.inflight < capacity.max && queue.running.size < asyncShare(capacity.max);
  }

  private armTimer(now: number): void {
    let next = Infinity;
    for (const queue of this.queues.values()) {
      const head = queue.waiting[0];
      // A due head without a slot waits for a poke (an invocation ending), with this as a backstop.
      if (head) next = Math.min(next, Math.max(head.next_attempt_at, now + (head.next_attempt_at <= now ? 100 : 0)));
    }
    if (next === Infinity || (this.timer && this.timerAt <= next)) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.pump();
    }, Math.max(0, next - now));
    this.timer.unref();
  }

  private start(functionId: string, queue: FunctionQueue, event: QueuedEvent): void {
    queue.running.set(event.request_id, event);
    this.running += 1;
    const attempt = this.attempt(functionId, event).catch((error: unknown) => {
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
      this.options.log(`async event ${event.request_id}: ${(error as Error).message}`);
    }).finally(() => {
      queue.running.delete(event.request_id);
      this.running -= 1;
      this.attempts.delete(attempt);
      this.pump();
    });
    this.attempts.add(attempt);
  }

  private async attempt(functionId: string, event: QueuedEvent): Promise<void> {
    const settings = this.options.settings(functionId);
    if (!settings) return;
    const queue = this.queueOf(functionId);
    const now = this.now();
    if (isTooOld(event, now, settings)) {
      await this.bury(event, 'EventAgeExceeded');
      return;
    }
    // The claim: committed before user code runs, as if it will fail (a crash then counts it).
    const failures = event.failures + 1;
    const claimed: QueuedEvent = { ...event, attempts: event.attempts + 1, failures, next_attempt_at: now + retryDelayMs(settings.retryDelayMs, failures), updated_at: now };
    // Leased for as long as the attempt may take: another host (after this one died) runs it only once it ran out.
    if (!(await this.options.store.claimEvent(claimed, this.options.host ?? 'local', settings.attemptLeaseMs))) {
      if (this.queues.get(functionId) === queue) insertByTime(queue.waiting, { ...event, next_attempt_at: now + leasedElsewhereRetryMs });
      return;
    }
    // What the settlement decided, applied in memory once the record and it have committed.
    const decided: { settled: Settled | null } = { settled: null };
    const settle = (result: AttemptResult): EventSettlement => {
      const at = this.now();
      if (result.status === 'success') {
        decided.settled = { event: claimed, outcome: 'succeeded' };
        return { delete: claimed.request_id };
      }
      const failed: QueuedEvent = { ...claimed, last_error: boundedError(result.error ?? { type: result.status, message: result.status }), updated_at: at };
      const next = afterFailure(failed, at, settings);
      const after: QueuedEvent = 'dead' in next
        ? { ...failed, state: 'dead', dead_reason: next.dead }
        : { ...failed, next_attempt_at: next.retryAt };
      decided.settled = { event: after, outcome: 'dead' in next ? 'dead' : 'retried' };
      return { save: after };
    };
    try {
      await this.options.run(claimed, settle);
    } catch (error) {
      if (decided.settled === null) {
        await this.release(functionId, claimed, error);
        return;
      }
      // The record (and the settlement with it) did not commit: the claim stands, and so does its retry time.
      if (this.queues.get(functionId) === queue) insertByTime(queue.waiting, claimed);
      throw error;
    }
    queue.refusals.delete(claimed.request_id);
    const done = decided.settled;
    if (done === null || this.queues.get(functionId) !== queue) return; // recorded nothing (deleted meanwhile)
    if (done.outcome === 'retried') insertByTime(queue.waiting, done.event);
    if (done.outcome === 'dead') queue.dead += 1;
    this.options.onOutcome(functionId, done.outcome);
  }

  /** A refusal before user code ran: the claim is undone and the event waits, backing off, while young enough. */
  private async release(functionId: string, claimed: QueuedEvent, reason: unknown): Promise<void> {
    const settings = this.options.settings(functionId);
    const queue = this.queues.get(functionId);
    if (!settings || !queue) return;
    const refusals = (queue.refusals.get(claimed.request_id) ?? 0) + 1;
    const now = this.now();
    // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
    const message = (reason as Error).message;
    const released: QueuedEvent = {
      ...claimed, attempts: claimed.attempts - 1, failures: claimed.failures - 1,
      next_attempt_at: now + refusalDelayMs(settings.retryDelayMs, refusals), last_error: { type: 'Refused', message }, updated_at: now,
    };
    if (isTooOld(released, released.next_attempt_at, settings)) {
      queue.refusals.delete(claimed.request_id);
      await this.bury(released, 'EventAgeExceeded');
      return;
    }
    await this.options.store.saveEvent(released);
    queue.refusals.set(claimed.request_id, refusals);
    insertByTime(queue.waiting, released);
  }

  private async bury(event: QueuedEvent, reason: AsyncEvent['dead_reason']): Promise<void> {
    await this.options.store.saveEvent({ ...event, state: 'dead', dead_reason: reason, updated_at: this.now() });
    this.queueOf(event.function_id).dead += 1;
    this.options.onOutcome(event.function_id, 'dead');
  }
}

function interrupted(event: QueuedEvent): { type: string; message: string } {
  return { type: 'Interrupted', message: `the server stopped during attempt ${event.attempts}` };
}

/** Bounds of a stored error (user code chose it): kept with every dead letter and shown by the API. */
export const storedErrorLimits = { type: 256, message: 1024 } as const;
const truncatedMark = '... [truncated]';

function boundedError(error: { type: string; message: string }): { type: string; message: string } {
  const cut = (text: string, max: number) => (text.length <= max ? text : text.slice(0, max) + truncatedMark);
  return { type: cut(error.type, storedErrorLimits.type), message: cut(error.message, storedErrorLimits.message) };
}

/** Inserts keeping `events` ordered by next_attempt_at (new events go last among equals). */
function insertByTime(events: QueuedEvent[], event: QueuedEvent): void {
  let low = 0;
  let high = events.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((events[mid]?.next_attempt_at ?? 0) <= event.next_attempt_at) low = mid + 1;
    else high = mid;
  }
  events.splice(low, 0, event);
}

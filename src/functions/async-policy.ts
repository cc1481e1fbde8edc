// When an asynchronous event runs again, and when it gives up: pure functions of the event, the function's
// settings and the clock (tested alone). Lambda's rules: a function error or timeout is retried up to
// MaximumRetryAttempts times (default 2), waiting the base delay and then twice it (1 min, 2 min by default);
// a refusal before user code ran (throttled, deploying, no VM) is retried without counting, backing off from
// 1 s (or the base delay if shorter) doubling to 5 min; an event older than its maximum age is given up on.
import type { DeadReason, QueuedEvent } from '../store/types.js';

export interface AsyncSettings {
  maxRetries: number;
  maxEventAgeSeconds: number;
  /** FNVM_ASYNC_RETRY_DELAY_MS: the wait before the first retry. */
  retryDelayMs: number;
}

export const systemBackoffCapMs = 5 * 60_000;

/** The wait before the retry that follows failure number `failures` (1, 2...): the base delay, doubling. */
export function retryDelayMs(retryDelay: number, failures: number): number {
  return retryDelay * 2 ** Math.max(0, failures - 1);
}

/** The wait after the `refusals`-th refusal in a row (1, 2...): from min(1 s, base) doubling, at most 5 min. */
export function refusalDelayMs(retryDelay: number, refusals: number): number {
  return Math.min(systemBackoffCapMs, Math.min(1000, retryDelay) * 2 ** Math.max(0, refusals - 1));
}

export function isTooOld(event: Pick<QueuedEvent, 'enqueued_at'>, at: number, settings: AsyncSettings): boolean {
  return at - event.enqueued_at > settings.maxEventAgeSeconds * 1000;
}

export type Next = { retryAt: number } | { dead: DeadReason };

/** After a function error or timeout that made `event.failures` failures: retry when, or give up why. */
export function afterFailure(event: QueuedEvent, now: number, settings: AsyncSettings): Next {
  if (event.failures > settings.maxRetries) return { dead: 'RetriesExhausted' };
  const retryAt = now + retryDelayMs(settings.retryDelayMs, event.failures);
  return isTooOld(event, retryAt, settings) ? { dead: 'EventAgeExceeded' } : { retryAt };
}

/**
 * How many of a function's `maxConcurrency` slots async attempts may hold at once: half, so synchronous
 * invocations keep the rest; with a single slot the slot is shared (an async attempt holds it only while no
 * synchronous invocation runs, and a sync one arriving meanwhile gets 429, as it would from another caller).
 */
export function asyncShare(maxConcurrency: number): number {
  return Math.max(1, Math.floor(maxConcurrency / 2));
}

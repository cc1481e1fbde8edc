// The async retry policy alone: delays, the retry limit, the age cutoff, refusal backoff and the concurrency share.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { afterFailure, asyncShare, isTooOld, refusalDelayMs, retryDelayMs, systemBackoffCapMs } from '../src/functions/async-policy.js';
import type { AsyncEvent } from '../src/store/types.js';

const event = (failures: number, enqueuedAt = 0): AsyncEvent => ({
  request_id: 'r', function_id: 'f', payload: '{}', state: 'queued', attempts: failures, failures,
  enqueued_at: enqueuedAt, next_attempt_at: 0, last_error: null, dead_reason: null, updated_at: 0,
});
const settings = (maxRetries: number, maxEventAgeSeconds = 21_600, retryDelay = 60_000) => ({ maxRetries, maxEventAgeSeconds, retryDelayMs: retryDelay });

test('retries wait the base delay, then twice it (Lambda: 1 min, then 2 min)', () => {
  assert.deepEqual([1, 2, 3].map((f) => retryDelayMs(60_000, f)), [60_000, 120_000, 240_000]);
  assert.deepEqual(afterFailure(event(1), 1000, settings(2)), { retryAt: 61_000 });
  assert.deepEqual(afterFailure(event(2), 1000, settings(2)), { retryAt: 121_000 });
});

test('the retry limit counts failures: 0, 1 or 2 retries mean 1, 2 or 3 attempts', () => {
  for (const retries of [0, 1, 2]) {
    for (let failures = 1; failures <= 3; failures++) {
      const next = afterFailure(event(failures), 0, settings(retries));
      assert.deepEqual(next, failures > retries ? { dead: 'RetriesExhausted' } : { retryAt: retryDelayMs(60_000, failures) }, `${retries} retries, failure ${failures}`);
    }
  }
});

test('a retry that would run past the maximum age gives up now', () => {
  // Accepted at 0, max age 60 s: a retry due at 61 s is too late, one due at 59 s is not.
  assert.deepEqual(afterFailure(event(1), 0, settings(2, 60, 61_000)), { dead: 'EventAgeExceeded' });
  assert.deepEqual(afterFailure(event(1), 0, settings(2, 60, 59_000)), { retryAt: 59_000 });
  assert.equal(isTooOld(event(0, 1000), 61_000, settings(2, 60)), false);
  assert.equal(isTooOld(event(0, 1000), 61_001, settings(2, 60)), true);
});

test('refusals back off from 1 s (or a shorter base) doubling, capped at 5 min', () => {
  assert.deepEqual([1, 2, 3, 4].map((n) => refusalDelayMs(60_000, n)), [1000, 2000, 4000, 8000]);
  assert.deepEqual([1, 2, 3].map((n) => refusalDelayMs(200, n)), [200, 400, 800]);
  assert.equal(refusalDelayMs(60_000, 30), systemBackoffCapMs);
});

test('async attempts hold at most half of max_concurrency, at least one', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 100, 1000].map(asyncShare), [1, 1, 1, 2, 2, 50, 500]);
});

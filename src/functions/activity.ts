// What the functions domain reports as it works, for observers (metrics, live logs): typed events on an
// emitter per service, so two servers in one process never count each other's work.
import { EventEmitter } from 'node:events';
import type { InvocationRecord } from '../store/types.js';
import type { AsyncOutcome } from './async-queue.js';

/** Why a function's VM was replaced. */
export type ReplacementCause = 'timeout' | 'oom' | 'crash' | 'hang' | 'protocol';

export interface Invoked {
  record: InvocationRecord;
  name: string;
  /** Host-measured: from the invoke call to the guest's answer (the record's duration_ms is the guest's). */
  hostMs: number;
}

export interface ActivityEvents {
  /** An invocation, once its record is committed. */
  invocation: [Invoked];
  /** An invocation refused with 429: the function was at its max_concurrency. */
  throttled: [{ functionId: string; name: string }];
  /** A deployment (create, redeploy after an error or a restart) finished: ready, or in error. */
  deployed: [{ functionId: string; name: string; ms: number; outcome: 'ready' | 'error' }];
  /** A serving VM was stopped and is being replaced. */
  replaced: [{ functionId: string; cause: ReplacementCause }];
  /** An asynchronous event was accepted, succeeded, is retried, gave up (a dead letter) or was redriven. */
  async: [{ functionId: string; name: string; outcome: AsyncOutcome }];
}

export class Activity extends EventEmitter<ActivityEvents> {
  constructor() {
    super();
    this.setMaxListeners(0); // one per live log stream
  }
}

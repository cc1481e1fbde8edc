// A cap on the functions that hold a live VM at once. A function that needs a VM while the cap is reached
// makes the least recently used idle function sleep (scale to zero early); if every live one is busy, it
// waits until one is idle or gone. Functions wake again on their next invocation.
import { Signal } from '../signal.js';

export class NoRoomError extends Error {
  override name = 'NoRoomError';
}

export class LiveVmCap {
  /** Functions holding a VM, least recently used first (a Map keeps insertion order). */
  private readonly holders = new Map<string, true>();
  /** Notified when a holder leaves or goes idle: a waiting admit() looks again. */
  private readonly changed = new Signal();

  constructor(
    readonly max: number,
    /** Puts the function to sleep if it is idle; false if it is busy (or already has no VM). */
    private readonly sleepIfIdle: (functionId: string) => boolean,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`the live VM cap must be an integer >= 1, got ${max}`);
  }

  get live(): number {
    return this.holders.size;
  }

  /** Waits (up to `waitMs`) for room for the function's VM; a function already holding one keeps it. */
  async admit(functionId: string, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (!this.holders.has(functionId) && this.holders.size >= this.max) {
      if (this.evictOne(functionId)) continue;
      const left = deadline - Date.now();
      if (left <= 0) throw new NoRoomError(`no room for another VM: all ${this.max} live VMs (FNVM_MAX_LIVE_VMS) are busy`);
      await this.changed.wait(left);
    }
    this.holders.delete(functionId);
    this.holders.set(functionId, true);
  }

  /** The function was invoked: if it holds a VM, it moves to the most recently used end. */
  used(functionId: string): void {
    if (this.holders.delete(functionId)) this.holders.set(functionId, true);
  }

  /** The function holds no VM any more. */
  leave(functionId: string): void {
    if (this.holders.delete(functionId)) this.changed.notify();
  }

  /** A live function finished its invocations: a waiting admit() may evict it now. */
  idle(): void {
    if (this.changed.waiting) this.changed.notify();
  }

  /** Sleeps the least recently used idle holder other than `except`; true if one went. */
  private evictOne(except: string): boolean {
    for (const id of this.holders.keys()) {
      if (id !== except && this.sleepIfIdle(id)) return true; // its VM went: it called leave()
    }
    return false;
  }
}

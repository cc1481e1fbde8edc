// Who holds a function, remembered: a forwarded request would otherwise wait on a database round trip (the owner
// lookup) before its own. An owner is remembered until its lease, as the lookup saw it, runs out, and forgotten
// sooner when the function changes owner, name or existence (every host hears of that through the change feed:
// claims and hand-backs notify it too) or when forwarding to it fails. Placement (no owner yet) is not remembered.
import type { FunctionChange } from '../functions/service.js';
import { SingleFlight } from '../single-flight.js';
import type { ForwardTarget } from './forward.js';
import type { Located } from './registry.js';

export interface OwnerCacheOptions {
  /** The database's answer (HostRegistry.locate). */
  lookup: (ref: string) => Promise<Located | undefined>;
  /** At most this many refs are remembered (the oldest go first). */
  maxEntries?: number;
  /** A clock in ms (tests move it). */
  now?: () => number;
}

interface Entry {
  functionId: string;
  owner: ForwardTarget;
  until: number;
}

export class OwnerCache {
  /** By the ref a request named the function with (its id or its name). */
  private readonly entries = new Map<string, Entry>();
  /** Lookups under way, shared by the requests that arrive meanwhile. */
  private readonly pending = new SingleFlight<string, ForwardTarget | null | undefined>();
  /** Bumped whenever something might have changed owners: a lookup that started before does not store its answer. */
  private epoch = 0;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(private readonly options: OwnerCacheOptions) {
    this.maxEntries = options.maxEntries ?? 4096;
    this.now = options.now ?? Date.now;
  }

  /** The function's live owner; null while it has none; undefined if there is no such function. */
  locate(ref: string): Promise<ForwardTarget | null | undefined> {
    const owner = this.remembered(ref);
    if (owner) return Promise.resolve(owner);
    this.entries.delete(ref);
    return this.pending.run(ref, () => this.lookUp(ref));
  }

  /** The owner remembered for `ref` and still within its lease, without asking anyone; else undefined. */
  remembered(ref: string): ForwardTarget | undefined {
    const entry = this.entries.get(ref);
    return entry && entry.until > this.now() ? entry.owner : undefined;
  }

  /** A change to a function, from any host: its remembered owner goes unless the change shows it kept it. */
  changed(change: FunctionChange): void {
    const id = 'deleted' in change ? change.deleted : change.item.id;
    let remembered = false;
    for (const [ref, entry] of this.entries) {
      if (entry.functionId !== id) continue;
      remembered = true;
      const kept = !('deleted' in change) && change.item.host_id === entry.owner.id && (ref === id || ref === change.item.name);
      if (!kept) this.entries.delete(ref);
    }
    // A function not remembered may be one being looked up: that answer could predate this change.
    if (!remembered || 'deleted' in change) this.epoch++;
  }

  /** Forwarding to this owner failed (unreachable, or it answered that it does not hold the function). */
  failed(ownerId: string): void {
    for (const [ref, entry] of this.entries) if (entry.owner.id === ownerId) this.entries.delete(ref);
    this.epoch++;
  }

  private async lookUp(ref: string): Promise<ForwardTarget | null | undefined> {
    const epoch = this.epoch;
    const started = this.now();
    const located = await this.options.lookup(ref);
    if (!located?.owner) return located === undefined ? undefined : null;
    if (epoch === this.epoch && located.leaseLeftMs > 0) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value ?? '');
      this.entries.set(ref, { functionId: located.functionId, owner: located.owner, until: started + located.leaseLeftMs });
    }
    return located.owner;
  }
}

// A host's part in the fleet: it keeps its lease, takes functions that have no live owner while it has room,
// lets go of those it no longer owns, and on SIGTERM hands its functions back before it leaves.
// States: joining -> member -> (fenced -> member) -> draining -> left. Fenced: the lease was lost (the host
// stalled or the database was out of reach): everything it held may have moved, so it drops it all and joins
// again under a new generation, taking functions anew like any host.
import type { HostRegistry } from './registry.js';

/** What the member drives: the functions service's fleet surface. */
export interface HeldFunctions {
  adopt(id: string): Promise<void>;
  release(id: string): Promise<void>;
  held(): string[];
}

export type MemberState = 'joining' | 'member' | 'fenced' | 'draining' | 'left';

export interface FleetMemberOptions {
  /** How often the member looks for functions to take and checks what it owns. */
  placementIntervalMs?: number;
  /** How long a drain waits for other hosts to take its functions. */
  drainTimeoutMs?: number;
  log: (message: string) => void;
}

export class FleetMember {
  private stateNow: MemberState = 'joining';
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private placementTimer: NodeJS.Timeout | null = null;
  /** One round at a time: a slow database must not pile rounds up. */
  private round: Promise<void> = Promise.resolve();
  private readonly placementIntervalMs: number;
  private readonly drainTimeoutMs: number;

  constructor(private readonly registry: HostRegistry, private readonly functions: HeldFunctions, private readonly options: FleetMemberOptions) {
    this.placementIntervalMs = options.placementIntervalMs ?? 500;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  }

  get state(): MemberState {
    return this.stateNow;
  }

  /** Registers and starts heartbeating and placing; resolves after the first placement round. */
  async join(): Promise<void> {
    await this.registry.register();
    this.stateNow = 'member';
    this.heartbeatTimer = setInterval(() => void this.serially(() => this.heartbeat()), this.registry.leaseMs / 3);
    this.placementTimer = setInterval(() => void this.serially(() => this.place()), this.placementIntervalMs);
    await this.serially(() => this.place());
  }

  /** A claim for a function created here: the service's Placement. */
  claim(functionId: string): Promise<boolean> {
    return this.stateNow === 'member' ? this.registry.claim(functionId) : Promise.resolve(false);
  }

  /**
   * Takes no new functions, hands back every one it holds (other hosts take them) and waits, up to the drain
   * timeout, until they are owned elsewhere; then ends its lease.
   */
  async drain(): Promise<void> {
    if (this.stateNow === 'left') return;
    this.stateNow = 'draining';
    this.stopTimers();
    await this.round;
    await this.registry.drain();
    const handedBack = this.functions.held();
    for (const id of handedBack) {
      await this.registry.unclaim(id);
      await this.functions.release(id);
    }
    // Wait for the others to take them, if there are others to do it.
    const others = (await this.registry.list()).filter((h) => h.alive && !h.draining && h.id !== this.registry.id);
    const deadline = Date.now() + (others.length > 0 ? this.drainTimeoutMs : 0);
    while (Date.now() < deadline && (await this.registry.unowned(handedBack)).length > 0) {
      if (!(await this.registry.heartbeat())) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await this.leave();
  }

  /** Ends the lease without handing functions over (they move when other hosts see it gone: at once). */
  async leave(): Promise<void> {
    this.stopTimers();
    await this.round;
    if (this.stateNow !== 'left') await this.registry.leave();
    this.stateNow = 'left';
  }

  private stopTimers(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.placementTimer) clearInterval(this.placementTimer);
    this.heartbeatTimer = this.placementTimer = null;
  }

  private serially(step: () => Promise<void>): Promise<void> {
    this.round = this.round.then(step).catch((error: unknown) => {
      this.options.log(`fleet: ${error instanceof Error ? error.message : String(error)}`);
    });
    return this.round;
  }

  private async heartbeat(): Promise<void> {
    if (this.stateNow !== 'member') return;
    if (await this.registry.heartbeat()) return;
    this.stateNow = 'fenced';
    this.options.log(`fleet: host ${this.registry.id} lost its lease (generation ${this.registry.generation}); dropping its functions and joining again`);
    for (const id of this.functions.held()) await this.functions.release(id);
    await this.registry.register();
    this.stateNow = 'member';
  }

  /** Lets go of what another host owns now; takes what no live host owns while there is room. */
  private async place(): Promise<void> {
    if (this.stateNow !== 'member') return;
    const placement = await this.registry.placement();
    const owned = new Set(placement.owned);
    const held = new Set(this.functions.held());
    for (const id of held) if (!owned.has(id)) await this.functions.release(id);
    for (const id of owned) if (!held.has(id)) await this.functions.adopt(id);
    for (const id of placement.orphans) {
      if (this.stateNow !== 'member') return;
      if (await this.registry.claim(id)) await this.functions.adopt(id);
    }
  }
}

// The fleet's host registry in the shared PostgreSQL database: every host registers itself with a lease it
// renews by heartbeat, and functions are placed on hosts by claims that check capacity under the host row's lock.
// Leases run on the database's clock, so hosts' clocks may disagree. A registration bumps the host's generation:
// a claim records the generation it was made under, so a host that lost its lease (and so its functions) and
// came back under a new generation cannot mistake an old claim for a current one (fencing).
import { sql, type ExpressionBuilder, type Kysely, type Transaction } from 'kysely';
import { notifyChange } from './changes.js';

export interface HostsTable {
  id: string;
  /** Where other hosts reach this one (FNVM_ADVERTISE_URL). */
  url: string;
  vcpu: number;
  memory_mb: number;
  /** Functions this host may hold. */
  max_functions: number;
  /** Of them, with a live VM at once (FNVM_MAX_LIVE_VMS: the others sleep). */
  max_live_vms: number;
  /** Bumped at every registration (start); claims carry it. */
  generation: number;
  /** Unix ms on the database's clock. */
  lease_expires_at: number;
  started_at: number;
  /** 1 while the host moves its functions away before it exits (it takes no new ones). */
  draining: number;
}

/** The columns of functions placement reads and writes. */
export interface PlacedFunctionsTable {
  id: string;
  name: string;
  vcpu: number;
  memory_mb: number;
  host_id: string | null;
  host_generation: number | null;
}

export interface FleetTables {
  hosts: HostsTable;
  functions: PlacedFunctionsTable;
}

export interface HostCapacity {
  vcpu: number;
  memory_mb: number;
  max_functions: number;
  max_live_vms: number;
}

export interface HostIdentity extends HostCapacity {
  id: string;
  url: string;
}

/** A host as `GET /v1/hosts` shows it. */
export interface HostView {
  id: string;
  url: string;
  alive: boolean;
  draining: boolean;
  generation: number;
  capacity: HostCapacity;
  /** What its functions are configured to take. */
  used: { vcpu: number; memory_mb: number };
  /** How many functions it holds. */
  functions: number;
}

/** Where a function is served: its id, its live owner (null: none now) and how long that owner's lease has left. */
export interface Located {
  functionId: string;
  owner: { id: string; url: string } | null;
  leaseLeftMs: number;
}

/** A lease is this long by default; hosts renew it every third of it, so a missed heartbeat still holds it. */
export const defaultLeaseMs = 5000;

/** The database's clock in unix ms (one clock for every host's lease). */
export const dbNow = sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;

/** A function's claim is live while its host holds a lease under the generation the claim was made in. */
const withoutLiveOwner = (eb: ExpressionBuilder<FleetTables, 'functions'>) => eb.not(eb.exists(
  eb.selectFrom('hosts').select('hosts.id')
    .whereRef('hosts.id', '=', 'functions.host_id')
    .whereRef('hosts.generation', '=', 'functions.host_generation')
    .where('hosts.lease_expires_at', '>', dbNow),
));

/** Whether a host holding `used` has room for a function of `memoryMb` more: the one rule claims and creates share. */
function fits(capacity: { memory_mb: number; max_functions: number }, used: { functions: number; memory_mb: number }, memoryMb: number): boolean {
  return used.functions < capacity.max_functions && used.memory_mb + memoryMb <= capacity.memory_mb;
}

/**
 * Whether some live host that takes new functions has room for one of `memoryMb` now: a create nobody has room for
 * is refused rather than stored to wait. A concurrent claim may still take the room; the function then waits for a
 * host with room, as one whose host died does.
 */
export async function anyHostHasRoom(db: Kysely<FleetTables>, memoryMb: number): Promise<boolean> {
  return (await listHosts(db)).some((h) => h.alive && !h.draining && fits(h.capacity, { functions: h.functions, memory_mb: h.used.memory_mb }, memoryMb));
}

/** Every registered host with what it holds, alive ones first. */
async function listHosts(db: Kysely<FleetTables>): Promise<HostView[]> {
  const rows = await db
    .selectFrom('hosts')
    .leftJoin('functions', (join) => join.onRef('functions.host_id', '=', 'hosts.id').onRef('functions.host_generation', '=', 'hosts.generation'))
    .select((eb) => [
      'hosts.id', 'hosts.url', 'hosts.vcpu', 'hosts.memory_mb', 'hosts.max_functions', 'hosts.max_live_vms', 'hosts.generation', 'hosts.draining',
      eb('hosts.lease_expires_at', '>', dbNow).as('alive'),
      eb.fn.count<number>('functions.id').as('functions'),
      eb.fn.coalesce(eb.fn.sum<number>('functions.memory_mb'), sql<number>`0`).as('used_memory_mb'),
      eb.fn.coalesce(eb.fn.sum<number>('functions.vcpu'), sql<number>`0`).as('used_vcpu'),
    ])
    .groupBy('hosts.id')
    .orderBy('hosts.id')
    .execute();
  return rows
    .map((r) => ({
      id: r.id, url: r.url, alive: r.alive === true, draining: r.draining === 1, generation: r.generation,
      capacity: { vcpu: r.vcpu, memory_mb: r.memory_mb, max_functions: r.max_functions, max_live_vms: r.max_live_vms },
      // sum() of integers is numeric in PostgreSQL, which node-postgres gives as text.
      used: { vcpu: Number(r.used_vcpu), memory_mb: Number(r.used_memory_mb) },
      functions: Number(r.functions),
    }))
    .sort((a, b) => Number(b.alive) - Number(a.alive));
}

export class HostRegistry {
  private generationNow = 0;

  constructor(
    private readonly db: Kysely<FleetTables>,
    private readonly host: HostIdentity,
    /** How long a heartbeat holds the lease. */
    readonly leaseMs = defaultLeaseMs,
  ) {}

  get id(): string {
    return this.host.id;
  }

  /** The generation of the current registration (0 before the first). */
  get generation(): number {
    return this.generationNow;
  }

  /** Registers (or re-registers) this host with a fresh lease and a new generation. */
  async register(): Promise<number> {
    const { id, url, vcpu, memory_mb, max_functions, max_live_vms } = this.host;
    const row = await this.db
      .insertInto('hosts')
      .values({ id, url, vcpu, memory_mb, max_functions, max_live_vms, generation: 1, lease_expires_at: sql`${dbNow} + ${this.leaseMs}`, started_at: dbNow, draining: 0 })
      .onConflict((oc) => oc.column('id').doUpdateSet({
        url, vcpu, memory_mb, max_functions, max_live_vms, draining: 0,
        generation: sql`hosts.generation + 1`,
        lease_expires_at: sql`${dbNow} + ${this.leaseMs}`,
        started_at: dbNow,
      }))
      .returning('generation')
      .executeTakeFirstOrThrow();
    this.generationNow = row.generation;
    return row.generation;
  }

  /**
   * Renews the lease; false if it had expired or another registration replaced this one: the host has lost its
   * functions to others and must stop serving them (and register again to take part).
   */
  async heartbeat(): Promise<boolean> {
    const renewed = await this.db
      .updateTable('hosts')
      .set({ lease_expires_at: sql`${dbNow} + ${this.leaseMs}` })
      .where('id', '=', this.host.id)
      .where('generation', '=', this.generationNow)
      .where('lease_expires_at', '>', dbNow)
      .executeTakeFirst();
    return renewed.numUpdatedRows > 0n;
  }

  /** Takes no new functions from now on (SIGTERM: before its functions move away). */
  async drain(): Promise<void> {
    await this.db.updateTable('hosts').set({ draining: 1 }).where('id', '=', this.host.id).where('generation', '=', this.generationNow).execute();
  }

  /** Ends the lease now, so that other hosts take its functions at once rather than after the lease. */
  async leave(): Promise<void> {
    await this.db.updateTable('hosts').set({ lease_expires_at: 0 }).where('id', '=', this.host.id).where('generation', '=', this.generationNow).execute();
  }

  /**
   * Claims a function for this host if it has no live owner and this host has room for it, in one transaction
   * under this host's row lock (so concurrent claims onto one host see each other's); false otherwise. Every host
   * hears of a claim (notifyChange) when it commits.
   */
  claim(functionId: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const fn = await trx.selectFrom('functions').select('memory_mb').where('id', '=', functionId).executeTakeFirst();
      if (!fn || !(await this.hasRoom(trx, fn.memory_mb))) return false;
      const claimed = await trx
        .updateTable('functions')
        .set({ host_id: this.host.id, host_generation: this.generationNow })
        .where('id', '=', functionId)
        .where(withoutLiveOwner)
        .executeTakeFirst();
      if (claimed.numUpdatedRows === 0n) return false;
      await notifyChange(trx, this.host.id, functionId);
      return true;
    });
  }

  /** Hands a function back (a drain): another host with room claims it. Every host hears of it (as of a claim). */
  async unclaim(functionId: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const released = await trx.updateTable('functions').set({ host_id: null, host_generation: null })
        .where('id', '=', functionId).where('host_id', '=', this.host.id).where('host_generation', '=', this.generationNow).executeTakeFirst();
      if (released.numUpdatedRows > 0n) await notifyChange(trx, this.host.id, functionId);
    });
  }

  /** Which of these functions no live host owns (deleted ones are owned by nobody and not listed). */
  async unowned(functionIds: string[]): Promise<string[]> {
    if (functionIds.length === 0) return [];
    const rows = await this.db.selectFrom('functions').select('id').where('id', 'in', functionIds).where(withoutLiveOwner).execute();
    return rows.map((r) => r.id);
  }

  /**
   * A function (by id or name) and its live owner (null while it has none), with how long the owner's lease has
   * left; undefined if there is no such function.
   */
  async locate(ref: string): Promise<Located | undefined> {
    const row = await this.db.selectFrom('functions')
      .leftJoin('hosts', (join) => join.onRef('hosts.id', '=', 'functions.host_id').onRef('hosts.generation', '=', 'functions.host_generation')
        .on('hosts.lease_expires_at', '>', dbNow))
      .select(['functions.id as function_id', 'hosts.id', 'hosts.url', sql<number | null>`hosts.lease_expires_at - ${dbNow}`.as('lease_left_ms')])
      .where((eb) => eb.or([eb('functions.id', '=', ref), eb('functions.name', '=', ref)]))
      .orderBy(sql`functions.id = ${ref}`, 'desc') // an id before a name (as FunctionService.get)
      .limit(1)
      .executeTakeFirst();
    if (!row) return undefined;
    const owner = row.id !== null && row.url !== null ? { id: row.id, url: row.url } : null;
    return { functionId: row.function_id, owner, leaseLeftMs: Number(row.lease_left_ms ?? 0) };
  }

  /**
   * What a placement round needs, in one query (every host runs one every 0.5 s): the functions this host holds under
   * its current generation, and the orphans, without a live owner (none yet, one whose lease ran out, or one that
   * registered again since).
   */
  async placement(): Promise<{ owned: string[]; orphans: string[] }> {
    const mine = (eb: ExpressionBuilder<FleetTables, 'functions'>) => eb.and([eb('host_id', '=', this.host.id), eb('host_generation', '=', this.generationNow)]);
    const rows = await this.db.selectFrom('functions')
      .select((eb) => ['id', mine(eb).as('owned'), withoutLiveOwner(eb).as('orphan')])
      .where((eb) => eb.or([mine(eb), withoutLiveOwner(eb)]))
      .execute();
    // Both at once only while this host's own lease has run out (it is about to be fenced).
    return { owned: rows.filter((r) => r.owned === true).map((r) => r.id), orphans: rows.filter((r) => r.orphan === true).map((r) => r.id) };
  }

  /** Every registered host with what it holds, alive ones first. */
  list(): Promise<HostView[]> {
    return listHosts(this.db);
  }

  /** Locks this host's row and tells whether it is alive, not draining, and has room for `memoryMb` more. */
  private async hasRoom(trx: Transaction<FleetTables>, memoryMb: number): Promise<boolean> {
    const host = await trx.selectFrom('hosts').select(['memory_mb', 'max_functions'])
      .where('id', '=', this.host.id).where('generation', '=', this.generationNow)
      .where('lease_expires_at', '>', dbNow).where('draining', '=', 0)
      .forUpdate().executeTakeFirst();
    if (!host) return false;
    // Read after the lock: in READ COMMITTED each statement sees what the claims before it committed.
    const used = await trx.selectFrom('functions')
      .select((eb) => [eb.fn.countAll<number>().as('functions'), eb.fn.coalesce(eb.fn.sum<number>('memory_mb'), sql<number>`0`).as('memory_mb')])
      .where('host_id', '=', this.host.id).where('host_generation', '=', this.generationNow)
      .executeTakeFirstOrThrow();
    return fits(host, { functions: Number(used.functions), memory_mb: Number(used.memory_mb) }, memoryMb);
  }
}

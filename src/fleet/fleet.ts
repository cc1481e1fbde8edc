// This host's membership of a fleet (FNVM_DATABASE_URL set): its identity, the registry on the shared database,
// the member that keeps its lease and its functions, and the forwarding of requests to the hosts that hold theirs.
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import type { FleetConfig } from '../config.js';
import type { FunctionChange, Placement } from '../functions/service.js';
import type { Store } from '../store/types.js';
import { ChangeFeed } from './changes.js';
import { pgTypes } from '../store/postgres.js';
import { checkClusterSecret, requireClusterSecret } from './cluster-secret.js';
import { Forwarder, type ForwardedClient, type ForwardHooks, type ForwardTarget, type Refusal } from './forward.js';
import { FleetMember, type HeldFunctions } from './member.js';
import { PackageBlobs, type PackageBlobTables } from './package-blobs.js';
import { OwnerCache } from './owners.js';
import { anyHostHasRoom, HostRegistry, type FleetTables, type HostView } from './registry.js';
import { routeToOwner } from './routing.js';

/** The functions service as the fleet drives it. */
export interface FleetFunctions extends HeldFunctions {
  holds(ref: string): boolean;
  /** Emits 'change' with a FunctionChange for every change made through this host. */
  changes: EventEmitter;
}

export interface FleetOptions {
  databaseUrl: string;
  /** The shared store (a change another host made is read back from it). */
  store: Pick<Store, 'getFunction'>;
  config: FleetConfig;
  /** FNVM_MAX_LIVE_VMS, reported as part of the host's capacity. */
  maxLiveVms: number;
  dataDir: string;
  log: (message: string) => void;
  /** The registry's lease and the member's placement round (tests shorten them). */
  leaseMs?: number;
  placementIntervalMs?: number;
}

/** Unused package blobs past their grace are deleted this often (by every host: the statement is cheap). */
const blobSweepIntervalMs = 10 * 60_000;

export class Fleet {
  readonly forwarder: Forwarder;
  private readonly feed: ChangeFeed;
  /** The fleet's copy of every package, for hosts that take a function over (src/packages/shared.ts). */
  readonly packageBlobs: PackageBlobs;
  private blobSweepTimer: NodeJS.Timeout | null = null;
  private member: FleetMember | undefined;
  private registry: HostRegistry | undefined;
  /** Functions' owners as the registry last said, for the requests this host forwards. */
  private readonly owners: OwnerCache;
  private functions: FleetFunctions | undefined;

  /** How a new function is claimed: by this host if it has room, once it has joined. */
  readonly placement: Placement = {
    claim: (id) => this.member?.claim(id) ?? Promise.resolve(false),
    hasRoom: (memoryMb) => anyHostHasRoom(this.db, memoryMb), // this host's own registration is not needed to ask
  };

  private constructor(
    readonly hostId: string,
    private readonly db: Kysely<FleetTables>,
    private readonly blobsDb: Kysely<PackageBlobTables>,
    private readonly options: FleetOptions,
    private readonly secret: string,
  ) {
    this.forwarder = new Forwarder({ hostId, secret });
    this.feed = new ChangeFeed({ databaseUrl: options.databaseUrl, hostId, read: (id) => options.store.getFunction(id), log: options.log });
    this.packageBlobs = new PackageBlobs(blobsDb);
    this.owners = new OwnerCache({ lookup: (ref) => (this.registry ? this.registry.locate(ref) : Promise.resolve({ functionId: ref, owner: null, leaseLeftMs: 0 })) });
    this.feed.changes.on('change', (change: FunctionChange) => this.owners.changed(change));
  }

  /** The client's address of a request another host forwarded here (for the logs); else undefined. */
  clientOf(request: FastifyRequest): ForwardedClient | undefined {
    return this.forwarder.clientOf(request);
  }

  /** Every host's function changes, for this host's event streams. */
  get changes(): EventEmitter {
    return this.feed.changes;
  }

  /** The internal API other hosts call (refused without the cluster secret): this host as it sees itself. */
  internalApi(app: FastifyInstance): void {
    requireClusterSecret(app, this.secret);
    app.get('/internal/v1/host', async () => ({
      id: this.hostId, generation: this.registry?.generation ?? 0, state: this.member?.state ?? 'joining', functions: this.functions?.held().length ?? 0,
    }));
  }

  /** Checks the settings (a fleet needs FNVM_CLUSTER_SECRET) and connects to the shared database. */
  static open(options: FleetOptions): Fleet {
    const secret = checkClusterSecret(options.config.clusterSecret);
    const connect = (max: number) => {
      const pool = new Pool({ connectionString: options.databaseUrl, types: pgTypes, max, allowExitOnIdle: true });
      pool.on('error', (error) => options.log(`fleet: an idle database connection failed: ${error.message}`));
      return new PostgresDialect({ pool });
    };
    // Packages (up to 50 MiB each way) have connections of their own: their transfers never hold up a heartbeat.
    const db = new Kysely<FleetTables>({ dialect: connect(4) });
    const blobsDb = new Kysely<PackageBlobTables>({ dialect: connect(2) });
    return new Fleet(options.config.hostId ?? hostIdIn(options.dataDir), db, blobsDb, options, secret);
  }

  /** The functions service this host runs (set before join). */
  attach(functions: FleetFunctions): void {
    this.functions = functions;
    functions.changes.on('change', (change: FunctionChange) => this.feed.publish(change));
  }

  /** Registers this host at `listenUrl` (unless FNVM_ADVERTISE_URL says otherwise) and starts taking functions. */
  async join(listenUrl: string): Promise<void> {
    if (!this.functions) throw new Error('fleet: attach the functions service before joining');
    const { config } = this.options;
    const url = config.advertiseUrl ?? listenUrl;
    this.registry = new HostRegistry(this.db, {
      id: this.hostId, url, vcpu: availableParallelism(), memory_mb: config.memoryMb, max_functions: config.maxFunctions, max_live_vms: this.options.maxLiveVms,
    }, this.options.leaseMs);
    await this.feed.start();
    this.member = new FleetMember(this.registry, this.functions, { placementIntervalMs: this.options.placementIntervalMs, log: this.options.log });
    await this.member.join();
    this.blobSweepTimer = setInterval(() => {
      this.packageBlobs.sweep().catch((error: unknown) => this.options.log(`fleet: sweeping package blobs failed: ${error instanceof Error ? error.message : String(error)}`));
    }, blobSweepIntervalMs).unref();
    this.options.log(`fleet: host ${this.hostId} joined at ${url} (generation ${this.registry.generation})`);
  }

  /** An onRequest hook: a request about a function another host holds is answered by that host. */
  route(functionOf: (request: FastifyRequest) => string | undefined, refusal?: Refusal): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
    return routeToOwner({
      hostId: this.hostId,
      holds: (ref) => this.functions?.holds(ref) ?? false,
      locate: (ref) => this.owners.locate(ref),
      forward: (request, reply, target) => this.forwarder.forward(request, reply, target, this.hooksFor(target, refusal)),
      functionOf,
    });
  }

  /**
   * Before Fastify sees the request (server.ts): an invocation of a function another host is remembered to hold
   * goes there at once; routing it through Fastify first was a quarter of the extra hop. Anything else, a function
   * not remembered included, returns false and takes its route, whose hook (route()) asks the registry.
   */
  forwardEarly(incoming: IncomingMessage, res: ServerResponse, ref: string, refusal?: Refusal): boolean {
    if (this.functions === undefined || this.functions.holds(ref)) return false;
    const owner = this.owners.remembered(ref);
    if (owner === undefined || owner.id === this.hostId) return false;
    this.forwarder.forwardRaw(incoming, res, owner, this.hooksFor(owner, refusal));
    return true;
  }

  /** A forward that fails makes this host forget that owner; `refusal` writes the 503 in the route's API's format. */
  private hooksFor(target: ForwardTarget, refusal: Refusal | undefined): ForwardHooks {
    return { failed: () => this.owners.failed(target.id), refusal };
  }

  hosts(): Promise<HostView[]> {
    return this.registry ? this.registry.list() : Promise.resolve([]);
  }

  /** SIGTERM: hands this host's functions to the others, then leaves. */
  async drain(): Promise<void> {
    await this.member?.drain();
  }

  async close(): Promise<void> {
    if (this.blobSweepTimer) clearInterval(this.blobSweepTimer);
    await this.member?.leave();
    await this.feed.close();
    this.forwarder.close();
    await this.db.destroy();
    await this.blobsDb.destroy();
  }
}

/** A host id made up once and kept in the data directory, so a restarted host is the same host. */
function hostIdIn(dataDir: string): string {
  const path = join(dataDir, 'host-id');
  if (existsSync(path)) {
    const id = readFileSync(path, 'utf8').trim();
    if (/^[A-Za-z0-9._-]{1,64}$/.test(id)) return id;
    throw new Error(`${path} must hold a host id of 1-64 letters, digits, '.', '_' or '-'`);
  }
  mkdirSync(dataDir, { recursive: true });
  const id = randomUUID();
  writeFileSync(path, `${id}\n`);
  return id;
}

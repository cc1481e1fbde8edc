// The functions domain: create, update (hot reload or move), delete, invoke and history, over a store
// and a warm VM pool. The store is the source of truth; `records` is its in-memory copy for the hot path.
import { randomUUID } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import { ChannelClosedError, ChannelTimeoutError } from '../guest/channel.js';
import type { Runtime } from '../guest/protocol.js';
import {
  NameTakenError,
  type FunctionPatch,
  type FunctionRecord,
  type FunctionState,
  type QueuedEvent,
  type EventSettlement,
  type InvocationRecord,
  type Store,
} from '../store/types.js';
import type { Vm } from '../vm/driver.js';
import type { FunctionSnapshots } from '../vm/function-snapshots.js';
import type { VmPool } from '../vm/pool.js';
import { specKey, type NetworkMode } from '../vm/spec.js';
import { PackageError, type PackageFile, type PackageInfo, type PackageRepository } from '../packages/types.js';
import { toMicros } from '../stats/bucket.js';
import { Activity } from './activity.js';
import { AsyncQueue, deadLetterOf, QueueFullError, type AttemptResult, type DeadLetter, type QueueFigures } from './async-queue.js';
import { busy, conflict, FunctionError, invalid, notFound, tooLarge, unavailable } from './errors.js';
import { DeletedError, FunctionInstance, LoadError, type Deployment, type InvokeOutcome, type SnapStart } from './instance.js';
import { Limiter } from '../limiter.js';
import { Signal } from '../signal.js';
import { LiveVmCap } from './live-vms.js';
import { functionMetrics, metricsSummary, type FunctionMetrics, type MetricsSummary } from './metrics.js';
import {
  checkDescription, checkEnvVars, checkHandler, checkLabel, checkName, checkRange, decodePackage, defaultPackageHandler, defaults, handlerPattern, isUuid, limits,
  normaliseRuntime,
} from './validation.js';

export interface FunctionInput {
  name?: string;
  runtime?: string;
  code?: string;
  /** Base64 of a zip: a packaged function (instead of code). */
  package?: string;
  handler?: string;
  vcpu?: number;
  memory_mb?: number;
  timeout_seconds?: number;
  max_concurrency?: number;
  env_vars?: Record<string, string>;
  description?: string;
  /** Lambda API only: the role and runtime identifier its client gave. */
  lambda_role?: string | null;
  lambda_runtime?: string | null;
  async_max_retries?: number;
  async_max_event_age_seconds?: number;
}

export interface InvokeResponse extends Omit<InvokeOutcome, 'version'> {
  request_id: string;
  version: number;
}

export interface ServiceOptions {
  store: Store;
  pool: VmPool;
  network: NetworkMode;
  /** How long an invocation waits for a function that is still deploying. */
  deployWaitMs: number;
  /** Invocation records kept per function. */
  retention: number;
  /** A function idle this long has its VM stopped (scale to zero); 0 keeps VMs forever. */
  idleSeconds: number;
  /** Functions with a live VM at once; beyond it the least recently used idle one sleeps. */
  maxLiveVms: number;
  /** SnapStart: functions whose code is slow to initialise wake from a snapshot (absent: always re-initialise). */
  snapshots?: FunctionSnapshots;
  /** Deployment packages, stored once by content; without it, `package` is refused. */
  packages?: PackageRepository;
  /** Asynchronous invocations: the wait before the first retry (doubling), and events queued per function at most. */
  asyncRetryDelayMs: number;
  asyncQueueDepth: number;
  /** In a fleet (src/fleet): this host holds only the functions it has claimed; absent, it holds every one. */
  placement?: Placement;
  /** The host id an async attempt's lease names (in a fleet). */
  hostId?: string;
  log: (message: string) => void;
}

/** How a fleet host takes functions: a new one is claimed here if this host has room (else another host takes it). */
export interface Placement {
  claim(functionId: string): Promise<boolean>;
  /** Whether any host has room for a function of this much memory now (else a create is refused). */
  hasRoom(memoryMb: number): Promise<boolean>;
}

const deploying: ReadonlySet<FunctionState> = new Set(['creating', 'booting', 'deploying']);
/** Dead letters read per query of a page (bounds how far a page overshoots its byte budget). */
const deadLetterChunk = 4;
/** Async attempts running at once on the host, over every function: the rest wait, sync traffic goes first. */
const maxAsyncAttempts = 32;
/** An async attempt's lease outlasts the function's timeout by this (recording it, a slow host). */
const attemptLeaseMarginMs = 5_000;
const guestAddress = '10.0.2.15';

/**
 * Where one invoke's time went, published for whoever subscribes (bench/api.ts prints the breakdown); with no
 * subscriber it costs two performance.now() calls.
 */
export const invokeTimings = channel('fnvm.invoke.timings');
export interface InvokeTimings {
  /** instance.invoke: getting the VM and the guest channel round trip, validation of the reply included. */
  guestMs: number;
  /** Recording the invocation (committed before the answer). */
  storeMs: number;
}

/** What watchers see: the new state of a function, or its deletion. */
export type FunctionChange = { item: FunctionRecord } | { deleted: string };

export class FunctionService {
  /** Emits 'change' with a FunctionChange after every stored change. */
  readonly changes = new EventEmitter().setMaxListeners(0);
  /** Invocations, throttles, deployments and VM replacements, for metrics and live logs. */
  readonly activity = new Activity();
  private readonly records = new Map<string, FunctionRecord>();
  private readonly instances = new Map<string, FunctionInstance>();
  /** Per function being deployed: notified when the deploy ends (invocations wait for it). */
  private readonly settled = new Map<string, Signal>();
  private readonly invokeAnnouncements = new Set<string>();
  /** Background deploys at once: each restores a VM, and there are only a few cores. */
  private readonly deploys = new Limiter(2);
  readonly liveVms: LiveVmCap;
  private readonly snapStart: SnapStart | undefined;
  /** Packages stored for a create or update that has not saved its record yet: not to be removed meanwhile. */
  private readonly pendingPackages = new Map<string, number>();

  private readonly queue: AsyncQueue;

  private constructor(private readonly options: ServiceOptions) {
    this.liveVms = new LiveVmCap(options.maxLiveVms, (id) => this.instances.get(id)?.sleepIfIdle() ?? false);
    this.snapStart = options.snapshots && this.snapStartOver(options.snapshots);
    this.queue = new AsyncQueue({
      store: options.store,
      ...(options.hostId !== undefined && { host: options.hostId }),
      settings: (id) => {
        const record = this.records.get(id);
        return record && {
          maxRetries: record.async_max_retries, maxEventAgeSeconds: record.async_max_event_age_seconds, retryDelayMs: options.asyncRetryDelayMs,
          attemptLeaseMs: record.timeout_seconds * 1000 + attemptLeaseMarginMs,
        };
      },
      capacity: (id) => {
        const record = this.records.get(id);
        const instance = this.instances.get(id);
        return record && instance && { inflight: instance.inflight, max: record.max_concurrency };
      },
      run: (event, settle) => this.runAttempt(event, settle),
      maxDepth: options.asyncQueueDepth,
      maxRunning: maxAsyncAttempts,
      onOutcome: (functionId, outcome) => {
        const record = this.records.get(functionId);
        if (record) this.activity.emit('async', { functionId, name: record.name, outcome });
      },
      log: options.log,
    });
  }

  /**
   * Loads every stored function. One that was ready without a VM (asleep) stays asleep; the others that were
   * not in error are redeployed (their VMs did not survive), from their snapshots where they have one.
   */
  static async open(options: ServiceOptions): Promise<FunctionService> {
    const service = new FunctionService(options);
    const records = await options.store.listFunctions();
    await options.snapshots?.keepOnly(new Set(records.map((r) => r.id)));
    await options.packages?.sweep(new Set(records.flatMap((r) => (r.package ? [r.package.sha256] : []))));
    if (options.placement) return service; // the fleet member adopts what this host claims
    for (const stored of records) await service.hold(stored);
    await service.queue.load();
    return service;
  }

  /**
   * Takes over a function this host has just claimed in a fleet (its previous host is gone or it is new):
   * deploys it here and runs its queued events. Nothing if it is held already or was deleted.
   */
  async adopt(id: string): Promise<void> {
    const stored = await this.options.store.getFunction(id);
    if (!stored || this.records.has(id)) return;
    await this.hold(stored);
    await this.queue.load(id);
  }

  /** Lets go of a function another host owns now: its VM stops; what is stored stays. */
  async release(id: string): Promise<void> {
    const instance = this.instances.get(id);
    this.records.delete(id);
    this.instances.delete(id);
    this.queue.drop(id);
    this.wakeSettled(id);
    await instance?.stop();
  }

  /** Whether this host holds the function (by id or name). */
  holds(idOrName: string): boolean {
    return this.find(idOrName) !== undefined;
  }

  /** The ids of the functions this host holds. */
  held(): string[] {
    return [...this.records.keys()];
  }

  /** Loads a stored function into this host: a ready one without a VM stays asleep, the rest not in error deploy. */
  private async hold(stored: FunctionRecord): Promise<void> {
    const snapshotBytes = this.options.snapshots?.bytes(stored.id) || null; // a snapshot may have gone stale
    const record = stored.snapshot_bytes === snapshotBytes ? stored : await this.options.store.updateFunction(stored.id, { snapshot_bytes: snapshotBytes }) ?? stored;
    if (this.records.has(record.id)) return;
    // A sleeping function wakes with its package's image: one not on this host (it slept on another) deploys,
    // which fetches the package, rather than fail its first invocation.
    const asleep = record.state === 'ready' && record.vm_id === null && (!record.package || this.options.packages?.has(record.package.sha256) !== false);
    const redeploy = !asleep && record.state !== 'error';
    // A VM it had did not survive (a restart, or another host had it): from now on invocations wait for the
    // deploy rather than find no VM.
    this.records.set(record.id, redeploy ? { ...record, state: 'creating', error: null } : record);
    const instance = this.newInstance(record.id);
    this.instances.set(record.id, instance);
    if (asleep) instance.startAsleep(this.deployment(record));
    if (!redeploy) return;
    if (record.state !== 'creating') await this.save(record.id, { state: 'creating', error: null });
    this.scheduleDeploy(record.id);
  }

  /** The functions this host holds. */
  list(): FunctionRecord[] {
    return [...this.records.values()];
  }

  /** Every function: in a fleet, of every host (from the store); else the ones held here. */
  async listAll(): Promise<FunctionRecord[]> {
    return this.options.placement ? this.options.store.listFunctions() : this.list();
  }

  /** By id, or by name. */
  get(idOrName: string): FunctionRecord {
    const record = this.find(idOrName);
    if (!record) throw notFound(idOrName);
    return record;
  }

  private find(idOrName: string): FunctionRecord | undefined {
    const byId = this.records.get(idOrName);
    if (byId) return byId;
    if (!isUuid(idOrName)) for (const record of this.records.values()) if (record.name === idOrName) return record;
    return undefined;
  }

  async create(input: FunctionInput): Promise<FunctionRecord> {
    if (input.name === undefined) throw invalid('name is required');
    if (input.runtime === undefined) throw invalid('runtime is required');
    if (input.code === undefined && input.package === undefined) throw invalid('code or package is required');
    const fields = checkFields(input);
    const runtime = fields.runtime ?? 'node';
    const packaged = input.package !== undefined;
    const handler = input.handler === undefined
      ? (packaged ? defaultPackageHandler(runtime) : defaults.handler)
      : checkHandler(input.handler, packaged);
    const source = await this.sourceOf(input);
    const name = fields.name ?? input.name;
    const memoryMb = fields.memory_mb ?? defaults.memoryMb;
    if (this.options.placement && !(await this.options.placement.hasRoom(memoryMb))) {
      await source.settle();
      // A request that could never succeed says so, rather than 503 that a client would retry.
      if (await this.options.store.getFunctionByName(name)) throw conflict(new NameTakenError(name).message);
      throw unavailable(`no host in the fleet has room for another function of ${memoryMb} MiB (GET /v1/hosts shows each host's capacity and use): delete a function or add a host`);
    }
    let record: FunctionRecord;
    try {
      record = await this.options.store.createFunction({
        ...fields, // description, lambda_*, async_*: the store defaults those absent
        id: randomUUID(),
        name,
        runtime,
        ...source.fields,
        handler,
        env_vars: fields.env_vars ?? {},
        timeout_seconds: fields.timeout_seconds ?? defaults.timeoutSeconds,
        memory_mb: memoryMb,
        vcpu: fields.vcpu ?? defaults.vcpu,
        max_concurrency: fields.max_concurrency ?? defaults.maxConcurrency,
        vm_id: null,
        guest_ip: null,
        port: null,
        state: 'creating',
        error: null,
        version: 1,
      });
    } catch (error) {
      await source.settle();
      throw error instanceof NameTakenError ? conflict(error.message) : error;
    }
    if (this.options.placement) {
      // Stored unplaced: this host takes it if it has room, else another host's placement does (src/fleet).
      const claimed = await this.options.placement.claim(record.id);
      if (claimed) await this.adopt(record.id);
      await source.settle(); // after adopt: a package held here stays for the record that uses it
      this.changes.emit('change', { item: this.records.get(record.id) ?? record } satisfies FunctionChange);
      return this.records.get(record.id) ?? record;
    }
    this.records.set(record.id, record);
    await source.settle(); // the record holds the package now
    this.instances.set(record.id, this.newInstance(record.id));
    this.changes.emit('change', { item: record } satisfies FunctionChange);
    this.scheduleDeploy(record.id);
    return record;
  }

  /**
   * Applies a partial update. Code/handler/env changes are loaded into the running VM before the new
   * definition is stored (a load error is a 400 and changes nothing); shape changes move to a new VM.
   */
  async update(idOrName: string, input: FunctionInput): Promise<FunctionRecord> {
    const id = this.get(idOrName).id;
    const instance = this.instance(id);
    return instance.exclusive(async () => {
      const current = this.get(id);
      const fields = checkFields(input);
      const packaged = input.package !== undefined || (input.code === undefined && current.package !== undefined);
      if (input.handler !== undefined) fields.handler = checkHandler(input.handler, packaged);
      else if (packaged !== (current.package !== undefined)) {
        // code -> package or back: a handler such as "src/app.handler" means nothing to the other kind
        fields.handler = packaged ? defaultPackageHandler(fields.runtime ?? current.runtime) : singleFileHandler(current.handler);
      }
      const source = await this.sourceOf(input);
      try {
        return await this.applyUpdate(id, instance, current, { ...fields, ...source.fields });
      } finally {
        await source.settle();
        if (current.package && this.records.get(id)?.package?.sha256 !== current.package.sha256) await this.dropPackage(current.package.sha256);
      }
    });
  }

  /** The update of `fields` on the function as it is now (inside the instance's exclusive turn). */
  private async applyUpdate(id: string, instance: FunctionInstance, current: FunctionRecord, fields: CheckedFields): Promise<FunctionRecord> {
    const patch = changes(current, fields);
    if (Object.keys(patch).length === 0) return current;
    if (patch.name !== undefined) this.checkNameFree(patch.name, id);
    const next = withSource({ ...current, ...patch, version: current.version + 1 }, patch);
    const touchesVm = ['code', 'package', 'handler', 'env_vars', 'runtime', 'memory_mb', 'vcpu'].some((k) => k in patch);
    if (touchesVm && current.snapshot_bytes !== null) {
      // The snapshot holds the old version: dropped now, so its disk is free before a new one is taken.
      await this.options.snapshots?.remove(id, false);
      await this.save(id, { snapshot_bytes: null });
    }
    if (touchesVm && current.state === 'ready' && instance.canServe) {
      try {
        await instance.reload(this.deployment(next));
      } catch (error) {
        if (error instanceof LoadError) throw invalid(`the new code does not load: ${error.message}`);
        // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
        throw unavailable(`could not apply the update: ${(error as Error).message}`);
      }
      return this.save(id, { ...patch, version: next.version });
    }
    if (touchesVm && current.state === 'error') {
      const saved = await this.save(id, { ...patch, version: next.version, state: 'creating', error: null });
      this.scheduleDeploy(id);
      return saved;
    }
    return this.save(id, { ...patch, version: next.version });
  }

  /**
   * The source `input` gives, ready to store: its code, or its package, stored (validated, its image built)
   * and held until `settle()`, which lets it go if no function ended up using it.
   */
  private async sourceOf(input: FunctionInput): Promise<{ fields: Pick<FunctionPatch, 'code' | 'package'>; settle: () => Promise<void> }> {
    const none = async () => {};
    if (input.code !== undefined && input.package !== undefined) throw invalid('give either code or package, not both');
    if (input.code !== undefined) {
      if (input.code.trim() === '') throw invalid('code must not be empty');
      const bytes = Buffer.byteLength(input.code);
      if (bytes > limits.codeBytes) throw tooLarge(`code is ${bytes} bytes: at most ${limits.codeBytes}; larger functions are deployment packages`);
      return { fields: { code: input.code }, settle: none };
    }
    if (input.package === undefined) return { fields: {}, settle: none };
    const packages = this.options.packages;
    if (!packages) throw invalid('this server does not take deployment packages');
    const zip = decodePackage(input.package);
    let info: PackageInfo;
    try {
      info = await packages.put(zip);
    } catch (error) {
      if (error instanceof PackageError) throw invalid(`package refused: ${error.message}`);
      throw error;
    }
    const { sha256 } = info;
    this.pendingPackages.set(sha256, (this.pendingPackages.get(sha256) ?? 0) + 1);
    return {
      fields: { package: info },
      settle: async () => {
        const left = (this.pendingPackages.get(sha256) ?? 1) - 1;
        if (left > 0) this.pendingPackages.set(sha256, left);
        else this.pendingPackages.delete(sha256);
        await this.dropPackage(sha256);
      },
    };
  }

  /** Removes a package from the host once no function (stored or being stored) uses it. */
  private async dropPackage(sha256: string): Promise<void> {
    if (this.pendingPackages.has(sha256)) return;
    for (const record of this.records.values()) if (record.package?.sha256 === sha256) return;
    try {
      await this.options.packages?.remove(sha256);
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
      this.options.log(`package ${sha256}: could not be removed: ${(error as Error).message}`);
    }
  }

  /** A packaged function's zip as stored; 404 for a single-file function. */
  packageZip(idOrName: string): { path: string; info: PackageInfo; name: string } {
    const record = this.get(idOrName);
    return { path: this.packages(record).zipPath(this.packageOf(record).sha256), info: this.packageOf(record), name: record.name };
  }

  packageFiles(idOrName: string): Promise<PackageFile[]> {
    const record = this.get(idOrName);
    return this.packages(record).files(this.packageOf(record).sha256);
  }

  async packageFile(idOrName: string, path: string): Promise<Buffer> {
    const record = this.get(idOrName);
    try {
      return await this.packages(record).readFile(this.packageOf(record).sha256, path);
    } catch (error) {
      if (error instanceof PackageError) throw new FunctionError('not_found', error.message);
      throw error;
    }
  }

  private packageOf(record: FunctionRecord): PackageInfo {
    if (!record.package) throw new FunctionError('not_found', `function ${record.name} has no package: its code is in the item`);
    return record.package;
  }

  private packages(record: FunctionRecord): PackageRepository {
    if (!this.options.packages) throw new FunctionError('not_found', `function ${record.name}'s package is not on this host`);
    return this.options.packages;
  }

  async delete(idOrName: string): Promise<void> {
    const record = this.get(idOrName);
    const { id } = record;
    const instance = this.instances.get(id);
    this.records.delete(id);
    this.instances.delete(id);
    this.queue.drop(id);
    this.wakeSettled(id);
    await instance?.stop(); // aborts a deploy in progress at its next step
    await this.options.snapshots?.remove(id);
    await this.options.store.deleteFunction(id);
    this.changes.emit('change', { deleted: id } satisfies FunctionChange);
    if (record.package) await this.dropPackage(record.package.sha256);
  }

  async invoke(idOrName: string, event: unknown): Promise<InvokeResponse> {
    return this.execute(this.get(idOrName), event, { requestId: randomUUID(), attempt: 1 });
  }

  /**
   * Accepts an asynchronous invocation: committed to the store before this resolves (the 202), run by the queue
   * at least once, retried after function errors, kept as a dead letter once it gives up.
   */
  async invokeAsync(idOrName: string, event: unknown): Promise<{ request_id: string }> {
    const record = this.get(idOrName);
    const payload = JSON.stringify(event ?? {});
    const bytes = Buffer.byteLength(payload);
    if (bytes > limits.asyncEventBytes) throw tooLarge(`an asynchronous event is at most ${limits.asyncEventBytes} bytes of JSON, this one ${bytes}`);
    const requestId = randomUUID();
    try {
      await this.queue.enqueue(record.id, requestId, payload);
    } catch (error) {
      if (error instanceof QueueFullError) {
        this.activity.emit('throttled', { functionId: record.id, name: record.name });
        throw busy(`function ${record.name}: ${error.message}`);
      }
      if (!this.records.has(record.id)) throw notFound(idOrName); // deleted meanwhile
      throw error;
    }
    return { request_id: requestId };
  }

  /** The asynchronous queue's figures for a function. */
  queueFigures(idOrName: string): QueueFigures {
    return this.queue.figures(this.get(idOrName).id);
  }

  async deadLetters(idOrName: string, limit: number, offset: number): Promise<{ items: DeadLetter[]; total: number }> {
    const { id } = this.get(idOrName);
    const items: DeadLetter[] = [];
    // Read a few at a time so that a page stops soon after limits.deadLetterPageBytes (always one letter at least).
    for (let bytes = 0; items.length < limit && bytes < limits.deadLetterPageBytes;) {
      const chunk = await this.options.store.listDeadLetters(id, Math.min(deadLetterChunk, limit - items.length), offset + items.length);
      for (const event of chunk) {
        items.push(deadLetterOf(event));
        bytes += event.payload.length;
      }
      if (chunk.length === 0) break;
    }
    return { items, total: this.queue.figures(id).dead_letters };
  }

  /** Dead letters back to the queue (all, or those named); resolves to how many. */
  redrive(idOrName: string, requestIds?: string[]): Promise<number> {
    return this.queue.redrive(this.get(idOrName).id, requestIds);
  }

  async discardDeadLetter(idOrName: string, requestId: string): Promise<void> {
    const record = this.get(idOrName);
    if (!(await this.queue.discard(record.id, requestId))) throw new FunctionError('not_found', `function ${record.name} has no dead letter ${requestId}`);
  }

  /** One attempt of an async event, for the queue: its record commits with `settle`'s settlement. */
  private async runAttempt(event: QueuedEvent, settle: (result: AttemptResult) => EventSettlement): Promise<void> {
    const record = this.records.get(event.function_id);
    const payload = await this.options.store.eventPayload(event.request_id);
    if (!record || payload === undefined) throw notFound(event.function_id); // deleted meanwhile
    await this.execute(record, JSON.parse(payload), { requestId: event.request_id, attempt: event.attempts, settle });
  }

  /**
   * Runs one invocation and commits its record (with an async attempt's settlement) before resolving. A sync
   * invocation waits for a deploy in progress; an async attempt is refused instead (the queue backs off).
   */
  private async execute(record: FunctionRecord, event: unknown, run: { requestId: string; attempt: number; settle?: (result: AttemptResult) => EventSettlement }): Promise<InvokeResponse> {
    const isAsync = run.settle !== undefined;
    if (deploying.has(record.state)) {
      if (isAsync) throw conflict(`function ${record.name} is still deploying (state: ${record.state})`);
      await this.waitSettled(record.id, this.options.deployWaitMs);
      record = this.get(record.id);
      if (deploying.has(record.state)) throw conflict(`function ${record.name} is still deploying (state: ${record.state})`);
    }
    if (record.state === 'error') throw conflict(`function ${record.name} is in error state: ${record.error ?? 'unknown error'}`);
    const instance = this.instance(record.id);
    if (instance.inflight >= record.max_concurrency) {
      if (!isAsync) this.activity.emit('throttled', { functionId: record.id, name: record.name });
      throw busy(`function ${record.name} is at its max_concurrency of ${record.max_concurrency}`);
    }
    const { requestId } = run;
    const invokedAt = new Date().toISOString();
    let outcome: InvokeOutcome;
    const started = performance.now();
    try {
      outcome = await instance.invoke(requestId, event, record.timeout_seconds * 1000, this.options.deployWaitMs);
    } catch (error) {
      if (error instanceof ChannelClosedError || error instanceof ChannelTimeoutError) {
        throw unavailable(`function ${record.name} has no running VM right now: ${error.message}`);
      }
      throw error;
    }
    const answered = performance.now();
    const durationMs = outcome.duration_ms; // bounded by the host's wait and to the microsecond (instance.ts)
    const settlement = run.settle?.({ status: outcome.status, error: outcome.error && { type: outcome.error.type, message: outcome.error.message } });
    await this.record(answered - started, settlement, {
      id: randomUUID(),
      function_id: record.id,
      request_id: requestId,
      status: outcome.status,
      duration_ms: durationMs,
      invoked_at: invokedAt,
      version: outcome.version,
      cold_start: outcome.cold_start,
      logs: outcome.logs,
      error: outcome.error,
      attempt: run.attempt,
      async: isAsync,
    });
    this.queue.poke(); // a slot is free again
    if (invokeTimings.hasSubscribers) {
      invokeTimings.publish({ guestMs: answered - started, storeMs: performance.now() - answered } satisfies InvokeTimings);
    }
    const { status, response, logs, error, cold_start, version } = outcome;
    return { request_id: requestId, status, duration_ms: durationMs, response, logs, error, cold_start, version };
  }

  async invocations(idOrName: string, limit: number, offset: number): Promise<{ items: InvocationRecord[]; total: number }> {
    const { id } = this.get(idOrName);
    const [items, total] = await Promise.all([
      this.options.store.listInvocations(id, limit, offset),
      this.options.store.countInvocations(id),
    ]);
    return { items, total };
  }

  /** A function's invocation statistics over `since` in steps of `step` (metrics-range.ts says what they may be). */
  metrics(idOrName: string, since?: string, step?: string): Promise<FunctionMetrics> {
    return functionMetrics(this.options.store, this.get(idOrName), since, step, Date.now());
  }

  /** Every function's invocation totals since `since`, in the order of list(). */
  async metricsSummary(since?: string): Promise<MetricsSummary> {
    return metricsSummary(this.options.store, await this.listAll(), since, Date.now());
  }

  /** Stops every function VM (in-flight invocations on them fail), including ones a deploy is still starting. */
  async close(): Promise<void> {
    await this.queue.close(); // attempts running finish and record first
    const instances = [...this.instances.values()];
    this.instances.clear();
    await Promise.all(instances.map((instance) => instance.stop()));
    // A deploy still restoring a VM stops it once it has it (the instance is stopped): wait for that.
    await Promise.all(instances.map((instance) => instance.exclusive(async () => {})));
  }

  /** How many invocations of the function are running now (0 for an unknown one). */
  inflight(id: string): number {
    return this.instances.get(id)?.inflight ?? 0;
  }

  private async record(hostMs: number, settle: EventSettlement | undefined, invocation: InvocationRecord): Promise<void> {
    const record = this.records.get(invocation.function_id);
    if (!record) return; // deleted while it ran: its history went with it
    record.last_invoked_at = invocation.invoked_at;
    try {
      await this.options.store.recordInvocation(invocation, this.options.retention, settle);
    } catch (error) {
      if (this.records.has(invocation.function_id)) throw error;
      return;
    }
    this.activity.emit('invocation', { record: invocation, name: record.name, hostMs });
    this.announceInvoked(record);
  }

  /** Tells watchers about last_invoked_at, at most once a second per function (invokes can be 1000s/s). */
  private announceInvoked(record: FunctionRecord): void {
    if (this.invokeAnnouncements.has(record.id)) return;
    this.invokeAnnouncements.add(record.id);
    setTimeout(() => {
      this.invokeAnnouncements.delete(record.id);
      const current = this.records.get(record.id);
      if (current) this.changes.emit('change', { item: current } satisfies FunctionChange);
    }, 1000).unref();
  }

  private newInstance(id: string): FunctionInstance {
    return new FunctionInstance(id, this.options.pool, {
      onVm: (vm, initMs) => void this.save(id, { ...this.vmFields(vm), ...(initMs !== null && { init_ms: toMicros(initMs) }) }).catch(() => {}),
      // While a replacement VM cannot be started the function stays ready (it retries) and `error` says why.
      onRetrying: (reason) => void this.save(id, reason === null ? { error: null } : { error: reason, ...this.vmFields(null) }).catch(() => {}),
      onReplaced: (cause) => this.activity.emit('replaced', { functionId: id, cause }),
      log: this.options.log,
    }, this.options.idleSeconds * 1000, { snapStart: this.snapStart, slots: this.liveVms, slotWaitMs: this.options.deployWaitMs });
  }

  /**
   * SnapStart over the host's snapshots: a function whose code took longer to initialise than a restore takes
   * is snapshotted right after it initialised, and wakes from that snapshot while its deployment is current.
   */
  private snapStartOver(snapshots: FunctionSnapshots): SnapStart {
    const bytesSaved = (id: string) => void this.save(id, { snapshot_bytes: snapshots.bytes(id) || null }).catch(() => {});
    return {
      wake: async (id, d) => {
        const entry = snapshots.find(id, deploymentKey(d));
        if (!entry) return null;
        try {
          return await snapshots.restore(entry);
        } catch (error) {
          await snapshots.remove(id, false); // the next wake initialises afresh and snapshots again
          throw error;
        } finally {
          if (snapshots.bytes(id) !== entry.snapshot.bytes) bytesSaved(id); // dropped
        }
      },
      initialised: async (id, d, vm, initMs) => {
        if (snapshots.find(id, deploymentKey(d)) || !snapshots.beats(initMs)) return;
        try {
          await snapshots.capture(id, deploymentKey(d), vm, initMs);
        } catch (error) {
          // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
          this.options.log(`function ${id}: no snapshot taken: ${(error as Error).message}`);
          if (vm.state !== 'running') throw error; // the VM broke with it: this start fails
        }
        bytesSaved(id);
      },
    };
  }

  private instance(id: string): FunctionInstance {
    const instance = this.instances.get(id);
    if (!instance) throw notFound(id);
    return instance;
  }

  private scheduleDeploy(id: string): void {
    const instance = this.instance(id);
    const scheduled = performance.now();
    instance.exclusive(() => this.deploys.run(() => this.deploy(id, instance, scheduled))).catch((error: unknown) => {
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
      this.options.log(`function ${id}: deploy bookkeeping failed: ${(error as Error).message}`);
    });
  }

  /** Deploys the stored definition; `scheduled` is when it was asked for (its wait for a deploy slot counts). */
  private async deploy(id: string, instance: FunctionInstance, scheduled: number): Promise<void> {
    const record = this.records.get(id);
    if (!record || this.instances.get(id) !== instance) return; // deleted, or shutting down
    const deployed = (outcome: 'ready' | 'error') =>
      this.activity.emit('deployed', { functionId: id, name: record.name, ms: performance.now() - scheduled, outcome });
    try {
      if (record.state !== 'creating') await this.save(id, { state: 'creating', error: null });
      // In a fleet the package may have been uploaded through another host: fetched first.
      if (record.package) await this.options.packages?.ensure(record.package.sha256);
      await instance.deploy(this.deployment(record), async (state, vm) => {
        await this.save(id, { state, ...(vm ? this.vmFields(vm) : {}) });
      });
      await this.save(id, { state: 'ready', error: null });
      deployed('ready');
    } catch (error) {
      if (error instanceof DeletedError || !this.records.has(id)) return;
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
      const reason = error instanceof LoadError ? error.message : `deployment failed: ${(error as Error).message}`;
      this.options.log(`function ${id}: ${reason}`);
      await this.save(id, { state: 'error', error: reason, ...this.vmFields(null) });
      deployed('error');
    } finally {
      this.wakeSettled(id);
    }
  }

  private deployment(record: FunctionRecord): Deployment {
    const pkg = record.package;
    const image = pkg && this.options.packages?.imagePath(pkg.sha256);
    return {
      code: record.code ?? '',
      package: pkg && image ? { sha256: pkg.sha256, image } : null,
      handler: record.handler,
      env: record.env_vars,
      version: record.version,
      spec: { runtime: record.runtime, vcpu: record.vcpu, memoryMb: record.memory_mb, network: this.options.network },
    };
  }

  private vmFields(vm: Vm | null): FunctionPatch {
    return { vm_id: vm?.id ?? null, guest_ip: vm && this.options.network === 'outbound' ? guestAddress : null };
  }

  /** Writes through to the store and the in-memory copy; a function deleted meanwhile stays deleted. */
  private async save(id: string, patch: FunctionPatch): Promise<FunctionRecord> {
    if (!this.records.has(id)) throw notFound(id);
    let saved: FunctionRecord | undefined;
    try {
      saved = await this.options.store.updateFunction(id, patch);
    } catch (error) {
      throw error instanceof NameTakenError ? conflict(error.message) : error;
    }
    if (!saved || !this.records.has(id)) throw notFound(id);
    saved.last_invoked_at = this.records.get(id)?.last_invoked_at ?? saved.last_invoked_at;
    this.records.set(id, saved);
    this.changes.emit('change', { item: saved } satisfies FunctionChange);
    return saved;
  }

  private checkNameFree(name: string, id: string): void {
    for (const record of this.records.values()) {
      if (record.name === name && record.id !== id) throw conflict(`a function named "${name}" already exists`);
    }
  }

  private waitSettled(id: string, ms: number): Promise<void> {
    let signal = this.settled.get(id);
    if (!signal) this.settled.set(id, (signal = new Signal()));
    return signal.wait(ms);
  }

  private wakeSettled(id: string): void {
    this.settled.get(id)?.notify();
    this.settled.delete(id);
  }
}

type CheckedFields = Omit<FunctionPatch, 'runtime'> & { runtime?: Runtime };

/** What a function snapshot must match to serve a deployment: its version and its VM's shape. */
function deploymentKey(d: Deployment): string {
  return `${d.version}/${specKey(d.spec)}`;
}

/** Validates the fields present in `input` and returns them normalised. */
function checkFields(input: FunctionInput): CheckedFields {
  const out: CheckedFields = {};
  if (input.name !== undefined) out.name = checkName(input.name);
  if (input.runtime !== undefined) {
    out.runtime = normaliseRuntime(input.runtime);
    out.lambda_runtime = null; // a runtime given without its Lambda identifier: reported from the runtime
  }
  if (input.lambda_runtime !== undefined) out.lambda_runtime = checkLabel('lambda_runtime', input.lambda_runtime);
  if (input.lambda_role !== undefined) out.lambda_role = checkLabel('lambda_role', input.lambda_role);
  if (input.description !== undefined) out.description = checkDescription(input.description);
  if (input.async_max_retries !== undefined) out.async_max_retries = checkRange('async_max_retries', input.async_max_retries, limits.asyncMaxRetries);
  if (input.async_max_event_age_seconds !== undefined) {
    out.async_max_event_age_seconds = checkRange('async_max_event_age_seconds', input.async_max_event_age_seconds, limits.asyncMaxEventAgeSeconds);
  }
  if (out.async_max_retries !== undefined || out.async_max_event_age_seconds !== undefined) out.async_configured_at = new Date().toISOString();
  if (input.env_vars !== undefined) out.env_vars = checkEnvVars(input.env_vars);
  if (input.vcpu !== undefined) out.vcpu = checkRange('vcpu', input.vcpu, limits.vcpu);
  if (input.memory_mb !== undefined) out.memory_mb = checkRange('memory_mb', input.memory_mb, limits.memoryMb);
  if (input.timeout_seconds !== undefined) {
    out.timeout_seconds = checkRange('timeout_seconds', input.timeout_seconds, limits.timeoutSeconds);
  }
  if (input.max_concurrency !== undefined) {
    out.max_concurrency = checkRange('max_concurrency', input.max_concurrency, limits.maxConcurrency);
  }
  return out;
}

/** A packaged function's handler, kept for its new single-file code if it fits ("index.handler"), else the default. */
function singleFileHandler(handler: string): string {
  return handlerPattern.test(handler) ? handler : defaults.handler;
}

/** `record` patched: a new code drops its package and a new package its code (one or the other, never both). */
function withSource(record: FunctionRecord, patch: FunctionPatch): FunctionRecord {
  if (patch.code !== undefined) return { ...record, package: undefined };
  if (patch.package !== undefined) return { ...record, code: undefined };
  return record;
}

/** The subset of `fields` that differs from `current`. */
function changes(current: FunctionRecord, fields: CheckedFields): FunctionPatch {
  const patch: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- keys checkFields set
    const before = current[key as keyof FunctionRecord];
    if (JSON.stringify(before) !== JSON.stringify(value)) patch[key] = value;
  }
  return patch;
}

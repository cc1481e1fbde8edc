// Composition root: store + images + VM driver + warm pool + functions service + HTTP API.
import { mkdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { checkExposure } from './api/auth.js';
import { buildApi } from './api/server.js';
import { databasePath, type Config } from './config.js';
import { checkClusterSecret } from './fleet/cluster-secret.js';
import { Fleet } from './fleet/fleet.js';
import type { HostView } from './fleet/registry.js';
import { FunctionService } from './functions/service.js';
import { ensureImages } from './images/build.js';
import { logInvocations } from './observability/invocation-log.js';
import { PrometheusMetrics } from './observability/prometheus.js';
import { SharedPackages } from './packages/shared.js';
import { PackageStore } from './packages/store.js';
import { databaseLocation, openPostgresStore } from './store/postgres.js';
import { openSqliteStore } from './store/sqlite.js';
import type { FunctionRecord, Store } from './store/types.js';
import { createQemuDriver } from './vm/driver.js';
import { FunctionSnapshots } from './vm/function-snapshots.js';
import { VmPool } from './vm/pool.js';
import { ensureSystemPackages } from './system-deps.js';
import { reapOrphans, runDirFor } from './vm/orphans.js';
import { ensureSandboxNetwork } from './vm/sandbox-net.js';

export interface Server {
  app: FastifyInstance;
  service: FunctionService;
  pool: VmPool;
  url: string;
  /** Graceful: stop accepting, let in-flight requests finish, stop every VM, close the database. */
  close(): Promise<void>;
}

export async function startServer(config: Config, startupLog: (message: string) => void): Promise<Server> {
  // Plain progress lines until the HTTP server exists; structured (pino) log lines from then on.
  let sink = startupLog;
  const log = (message: string) => sink(message);
  checkExposure(config.host, config.apiToken);
  if (config.databaseUrl !== undefined) checkClusterSecret(config.fleet.clusterSecret); // a fleet needs it: say so first
  // First: a database that cannot be used stops the server before images are built and VMs start.
  const store = await openStore(config, log);
  try {
    return await startOn(store, config, log, (next) => (sink = next));
  } catch (error) {
    await store.close();
    throw error;
  }
}

/** PostgreSQL if FNVM_DATABASE_URL names one, else the SQLite file in the data directory. */
async function openStore(config: Config, log: (message: string) => void): Promise<Store> {
  if (config.databaseUrl === undefined) return openSqliteStore(databasePath(config), { log });
  const store = await openPostgresStore(config.databaseUrl, { log });
  log(`store: PostgreSQL at ${databaseLocation(config.databaseUrl)}`);
  return store;
}

async function startOn(store: Store, config: Config, log: (message: string) => void, setSink: (sink: (message: string) => void) => void): Promise<Server> {
  await ensureSystemPackages(log);
  const images = await ensureImages(log);
  // Unix socket paths are limited to 107 bytes, so VM sockets live under a short temp path.
  reapOrphans(tmpdir(), log);
  const runRoot = runDirFor(tmpdir());
  mkdirSync(runRoot, { recursive: true });
  const netns = config.network === 'outbound' ? await ensureSandboxNetwork(log, { allow: config.egressAllow }) : null;
  const driver = await createQemuDriver({ images, runRoot, cacheDir: config.cacheDir, netns, log });
  log(`accelerator: ${driver.accel} (${driver.accelReason})`);
  const warm = (['node', 'python'] as const).map((runtime) => ({
    spec: { runtime, vcpu: 1, memoryMb: 256, network: config.network },
    size: config.poolSize,
  }));
  const pool = new VmPool(driver, { snapshotDir: join(config.cacheDir, 'snapshots', images.hash), warm, log });
  pool.start();
  const snapshots = config.snapshotDiskMb === 0 ? undefined : await FunctionSnapshots.open({
    dir: join(config.dataDir, 'snapshots'),
    driver,
    boot: { kernel: images.kernel, initramfs: images.initramfs, rootfs: images.rootfs },
    budgetBytes: config.snapshotDiskMb * 2 ** 20,
    baseRestoreMs: () => pool.restoreMs(),
    log,
  });
  const localPackages = new PackageStore(join(config.dataDir, 'packages'));
  // PostgreSQL: every host on the database is one of a fleet (a single one too).
  const fleet = config.databaseUrl === undefined ? undefined : Fleet.open({ databaseUrl: config.databaseUrl, store, config: config.fleet, maxLiveVms: config.maxLiveVms, dataDir: config.dataDir, log });
  // A fleet's packages are in the shared database too: a function may be deployed on any host.
  const packages = fleet ? new SharedPackages(localPackages, fleet.packageBlobs, log) : localPackages;
  const service = await FunctionService.open({
    store,
    pool,
    packages,
    network: config.network,
    deployWaitMs: config.deployWaitMs,
    retention: config.retention,
    idleSeconds: config.idleSeconds,
    maxLiveVms: config.maxLiveVms,
    asyncRetryDelayMs: config.asyncRetryDelayMs,
    asyncQueueDepth: config.asyncQueueDepth,
    snapshots,
    ...(fleet && { placement: fleet.placement, hostId: fleet.hostId }),
    log,
  });
  fleet?.attach(service);
  const health = () => ({
    status: 'ok',
    accelerator: driver.accel,
    accelerator_reason: driver.accelReason,
    vm_driver: driver.name,
    network: config.network,
    network_isolation: driver.networkIsolation,
    egress_allow: config.egressAllow,
    pool: pool.sizes(),
    live_vms: service.liveVms.live,
    max_live_vms: service.liveVms.max,
    snapshot_bytes: snapshots?.totalBytes ?? 0,
    snapshot_budget_bytes: config.snapshotDiskMb * 2 ** 20,
    snapstart_min_init_ms: snapshots?.minInitMs() ?? null,
    images: images.versions,
    functions: service.list().length,
  });
  let listening = '';
  const listenUrl = () => listening;
  const metrics = new PrometheusMetrics({ service, pool, driver });
  const app = await buildApi({
    service,
    health,
    metrics: () => metrics.scrape(),
    corsOrigins: config.corsOrigins,
    logLevel: config.logLevel,
    apiToken: config.apiToken,
    lambda: { region: config.region, accessKeyId: config.accessKeyId },
    hosts: fleet ? () => fleet.hosts() : async () => [thisHost(config, service.list(), listenUrl())],
    ...(fleet && { fleet }),
  });
  setSink((message) => app.log.info(message));
  logInvocations(service.activity, app.log);
  const url = await app.listen({ host: config.host, port: config.port });
  listening = url;
  await fleet?.join(url);
  return {
    app,
    service,
    pool,
    url,
    async close() {
      await fleet?.drain(); // its functions move to other hosts first
      await app.close();
      await service.close();
      await fleet?.close();
      await pool.close();
      await store.close();
      rmSync(runRoot, { recursive: true, force: true });
    },
  };
}

/** The one host of a server without a fleet, as GET /v1/hosts shows it. */
function thisHost(config: Config, functions: FunctionRecord[], url: string): HostView {
  return {
    id: 'local', url, alive: true, draining: false, generation: 1,
    capacity: { vcpu: availableParallelism(), memory_mb: config.fleet.memoryMb, max_functions: config.fleet.maxFunctions, max_live_vms: config.maxLiveVms },
    used: { vcpu: functions.reduce((sum, f) => sum + f.vcpu, 0), memory_mb: functions.reduce((sum, f) => sum + f.memory_mb, 0) },
    functions: functions.length,
  };
}

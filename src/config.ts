// Server settings from the environment, with the defaults README documents.
import { totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { cacheDir } from './images/build.js';
import { isPostgresUrl } from './store/postgres.js';
import { parseCidrList } from './vm/cidr.js';
import type { NetworkMode } from './vm/spec.js';

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** FNVM_DATABASE_URL: a PostgreSQL database instead of the SQLite file in dataDir. */
  databaseUrl: string | undefined;
  cacheDir: string;
  corsOrigins: string[];
  poolSize: number;
  retention: number;
  idleSeconds: number;
  deployWaitMs: number;
  /** Functions with a live VM at once (FNVM_MAX_LIVE_VMS). */
  maxLiveVms: number;
  /** Disk for functions' snapshots (SnapStart), MiB; 0 turns SnapStart off. */
  snapshotDiskMb: number;
  network: NetworkMode;
  /** CIDRs functions may reach although they are private (see README, egress policy). */
  egressAllow: string[];
  logLevel: string;
  apiToken: string | undefined;
  /** The Lambda API: the access key id signatures must name (the token is the secret key), the region in ARNs. */
  accessKeyId: string;
  region: string;
  /** Async invocations: the wait before the first retry (FNVM_ASYNC_RETRY_DELAY_MS), events queued per function. */
  asyncRetryDelayMs: number;
  asyncQueueDepth: number;
  /** A fleet (PostgreSQL): how hosts know each other and what this one offers. */
  fleet: FleetConfig;
}

export interface FleetConfig {
  /** FNVM_CLUSTER_SECRET: hosts' internal calls carry it (a fleet refuses to start without one). */
  clusterSecret: string | undefined;
  /** FNVM_ADVERTISE_URL: where other hosts reach this one; undefined: its listen address. */
  advertiseUrl: string | undefined;
  /** FNVM_HOST_ID; undefined: one made up once and kept in the data directory. */
  hostId: string | undefined;
  /** What placement may put here: memory the functions are configured with, and how many functions. */
  memoryMb: number;
  maxFunctions: number;
}

function int(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
  return value;
}

function hostId(): string | undefined {
  const id = process.env.FNVM_HOST_ID;
  if (id === undefined || id === '') return undefined;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new Error(`FNVM_HOST_ID must be 1-64 of A-Z a-z 0-9 . _ -, got "${id.slice(0, 80)}"`);
  return id;
}

function advertiseUrl(): string | undefined {
  const url = process.env.FNVM_ADVERTISE_URL;
  if (url === undefined || url === '') return undefined;
  if (!/^http:\/\//.test(url) || !URL.canParse(url)) throw new Error(`FNVM_ADVERTISE_URL must be an http:// URL other hosts reach this one at, got "${url}"`);
  return url.replace(/\/$/, '');
}

/** Never echoes the value: it may hold a password. */
function databaseUrl(): string | undefined {
  const url = process.env.FNVM_DATABASE_URL;
  if (url === undefined || url === '') return undefined;
  if (!isPostgresUrl(url) || !URL.canParse(url)) throw new Error('FNVM_DATABASE_URL must be a postgres:// or postgresql:// URL (unset: SQLite in FNVM_DATA_DIR)');
  return url;
}

export function configFromEnv(): Config {
  const network = process.env.FNVM_NETWORK ?? 'outbound';
  if (network !== 'outbound' && network !== 'none') throw new Error('FNVM_NETWORK must be "outbound" or "none"');
  let egressAllow: string[];
  try {
    egressAllow = parseCidrList(process.env.FNVM_EGRESS_ALLOW);
  } catch (error) {
    throw new Error(`FNVM_EGRESS_ALLOW: ${(error as Error).message}`);
  }
  return {
    host: process.env.FNVM_HOST ?? '127.0.0.1',
    port: int('FNVM_PORT', 18080),
    dataDir: resolve(process.env.FNVM_DATA_DIR ?? './data'),
    databaseUrl: databaseUrl(),
    cacheDir: cacheDir(),
    corsOrigins: (process.env.FNVM_CORS_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean),
    poolSize: int('FNVM_POOL_SIZE', 1),
    retention: int('FNVM_LOG_RETENTION', 1000, 1),
    idleSeconds: int('FNVM_IDLE_SECONDS', 300),
    deployWaitMs: int('FNVM_DEPLOY_WAIT_MS', 30_000),
    maxLiveVms: int('FNVM_MAX_LIVE_VMS', 64, 1),
    snapshotDiskMb: int('FNVM_SNAPSHOT_DISK_MB', 8192),
    network,
    egressAllow,
    logLevel: process.env.FNVM_LOG_LEVEL ?? 'info',
    apiToken: process.env.FNVM_API_TOKEN || undefined,
    accessKeyId: process.env.FNVM_ACCESS_KEY_ID || 'fnvm',
    region: process.env.FNVM_REGION || 'us-east-1',
    asyncRetryDelayMs: int('FNVM_ASYNC_RETRY_DELAY_MS', 60_000),
    asyncQueueDepth: int('FNVM_ASYNC_QUEUE_DEPTH', 100_000, 1),
    fleet: {
      clusterSecret: process.env.FNVM_CLUSTER_SECRET || undefined,
      advertiseUrl: advertiseUrl(),
      hostId: hostId(),
      // Idle functions sleep (scale to zero), so the memory functions are configured with may exceed the RAM.
      memoryMb: int('FNVM_HOST_MEMORY_MB', Math.floor((totalmem() / 2 ** 20) * 4), 1),
      maxFunctions: int('FNVM_HOST_MAX_FUNCTIONS', 500, 1),
    },
  };
}

export const databasePath = (config: Config) => join(config.dataDir, 'fnvm.sqlite');

// The store alone, SQLite (a real file) and PostgreSQL (a temporary server of test/support/postgres.ts: a unix
// socket on this machine, fsync on; or BENCH_DATABASE_URL, an empty database of yours) with the same figures:
// one recordInvocation at a time (the commit an invoke waits for), records/s with 32 concurrent writers (group
// commit), BENCH_RECORDS (default 5000) each, the same with two stores on one database (two hosts of a fleet);
// then the metrics reads over BENCH_FUNCTIONS (default 100) functions with an invocation in every minute of the
// last 24 h. BENCH_STORES (default sqlite,postgres) picks the stores.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { functionMetrics, metricsSummary } from '../src/functions/metrics.js';
import { databaseLocation, openPostgresStore } from '../src/store/postgres.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import type { FunctionRecord, InvocationRecord, NewFunction, Store } from '../src/store/types.js';
import { startPostgres } from '../test/support/postgres.js';
import { ms, percentile, row, timeEach } from './stats.js';

const records = Number(process.env.BENCH_RECORDS ?? 5000);
const functions = Number(process.env.BENCH_FUNCTIONS ?? 100);
const stores = (process.env.BENCH_STORES ?? 'sqlite,postgres').split(',');

/** A way to open stores on one new database, and to clean up after them. */
interface Target {
  open(): Promise<Store>;
  end(): Promise<void>;
}

async function sqliteTarget(): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'fnvm-bench-store-'));
  return { open: () => openSqliteStore(join(dir, 'fnvm.sqlite')), end: async () => rmSync(dir, { recursive: true, force: true }) };
}

async function postgresTarget(): Promise<Target> {
  const url = process.env.BENCH_DATABASE_URL;
  if (url) return { open: () => openPostgresStore(url), end: async () => {} };
  const server = await startPostgres();
  const database = await server.createDatabase();
  return { open: () => openPostgresStore(database), end: () => server.stop() };
}

const fnFields = (id: string): NewFunction => ({
  id, name: id, runtime: 'node', code: 'x', handler: 'handler', env_vars: {}, timeout_seconds: 30, memory_mb: 256,
  vcpu: 1, max_concurrency: 100, vm_id: null, guest_ip: null, port: null, state: 'ready', error: null, version: 1,
});

let n = 0;
const invocation = (functionId: string): InvocationRecord => ({
  id: `i${n}`, function_id: functionId, request_id: `r${n}`, status: n % 10 === 0 ? 'error' : 'success', duration_ms: 0.5 + (n++ % 97) * 1.7,
  invoked_at: new Date().toISOString(), version: 1, cold_start: false, logs: ['a line'], error: null, attempt: 1, async: false,
});

/** `count` records by 32 writers spread over `targets`; records/s. */
async function concurrent(targets: Store[], functionId: string, count: number): Promise<number> {
  const start = performance.now();
  let written = 0;
  await Promise.all(Array.from({ length: 32 }, async (_, w) => {
    const store = targets[w % targets.length] ?? targets[0];
    while (store && written < count) {
      written++;
      await store.recordInvocation(invocation(functionId), 1000);
    }
  }));
  return (count / (performance.now() - start)) * 1000;
}

async function bench(name: string, target: Target): Promise<void> {
  process.stdout.write(`${name}\n`);
  const store = await target.open();
  const second = await target.open();
  try {
    const fn = await store.createFunction(fnFields('bench'));
    await timeEach(500, () => store.recordInvocation(invocation(fn.id), 1000)); // warm-up
    const one = await timeEach(records, () => store.recordInvocation(invocation(fn.id), 1000));
    row('recordInvocation, one at a time p50 / p99', `${ms(percentile(one, 50))} / ${ms(percentile(one, 99))}`);
    row('32 concurrent writers', `${(await concurrent([store], fn.id, records)).toFixed(0)} records/s`);
    row('... over two stores on one database', `${(await concurrent([store, second], fn.id, records)).toFixed(0)} records/s`);
    await metricsReads(store);
  } finally {
    await second.close();
    await store.close();
    await target.end();
  }
}

async function metricsReads(store: Store): Promise<void> {
  const fns: FunctionRecord[] = [];
  for (let f = 0; f < functions; f++) fns.push(await store.createFunction(fnFields(`f${f}`)));
  const now = Date.now();
  for (let m = 0; m < 1440; m++) {
    await Promise.all(fns.flatMap((fn) => [0, 1, 2].map(() => store.recordInvocation({
      ...invocation(fn.id), status: 'success', logs: [], invoked_at: new Date(now - m * 60_000).toISOString(),
    }, 1))));
  }
  const time = async (label: string, read: () => Promise<unknown>) => {
    const samples = await timeEach(5, read);
    row(label, `${ms(percentile(samples, 50))} (max ${ms(Math.max(...samples))})`);
  };
  const first = fns[0];
  if (!first) return;
  await time('one function, 24 h in minutes', () => functionMetrics(store, first, '24h', undefined, Date.now()));
  await time('one function, 24 h in hours', () => functionMetrics(store, first, '24h', '1h', Date.now()));
  await time('one function, 30 d in hours', () => functionMetrics(store, first, '30d', undefined, Date.now()));
  await time(`totals of ${functions} functions, 1 h`, () => metricsSummary(store, fns, '1h', Date.now()));
  await time(`totals of ${functions} functions, 24 h`, () => metricsSummary(store, fns, '24h', Date.now()));
}

for (const name of stores) {
  const url = process.env.BENCH_DATABASE_URL;
  if (name === 'sqlite') await bench('SQLite (a file, WAL, synchronous=NORMAL)', await sqliteTarget());
  else if (name === 'postgres') await bench(`PostgreSQL (${url ? databaseLocation(url) : 'a temporary server, unix socket, fsync on'})`, await postgresTarget());
  else throw new Error(`BENCH_STORES: unknown store "${name}" (sqlite, postgres)`);
}

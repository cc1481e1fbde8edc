// The store alone on a real SQLite file: one recordInvocation at a time (the commit an invoke waits for),
// records/s with 32 concurrent writers (group commit), BENCH_RECORDS (default 5000) each; then the metrics reads
// over BENCH_FUNCTIONS (default 100) functions with an invocation in every minute of the last 24 h.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { functionMetrics, metricsSummary } from '../src/functions/metrics.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import type { FunctionRecord, InvocationRecord, Store } from '../src/store/types.js';
import { ms, percentile, row, timeEach } from './stats.js';

const records = Number(process.env.BENCH_RECORDS ?? 5000);
const functions = Number(process.env.BENCH_FUNCTIONS ?? 100);
const dir = mkdtempSync(join(tmpdir(), 'fnvm-bench-store-'));
const store = await openSqliteStore(join(dir, 'fnvm.sqlite'));
try {
  const fn = await store.createFunction({
    id: 'bench', name: 'bench', runtime: 'node', code: 'x', handler: 'handler', env_vars: {}, timeout_seconds: 30, memory_mb: 256,
    vcpu: 1, max_concurrency: 100, vm_id: null, guest_ip: null, port: null, state: 'ready', error: null, version: 1,
  });
  let n = 0;
  const invocation = (): InvocationRecord => ({
    id: `i${n}`, function_id: fn.id, request_id: `r${n}`, status: n % 10 === 0 ? 'error' : 'success', duration_ms: 0.5 + (n++ % 97) * 1.7,
    invoked_at: new Date().toISOString(), version: 1, cold_start: false, logs: ['a line'], error: null, attempt: 1, async: false,
  });
  await timeEach(500, () => store.recordInvocation(invocation(), 1000)); // warm-up
  const one = await timeEach(records, () => store.recordInvocation(invocation(), 1000));
  row('recordInvocation, one at a time p50 / p99', `${ms(percentile(one, 50))} / ${ms(percentile(one, 99))}`);

  const start = performance.now();
  let written = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (written < records) {
      written++;
      await store.recordInvocation(invocation(), 1000);
    }
  }));
  row('32 concurrent writers', `${((records / (performance.now() - start)) * 1000).toFixed(0)} records/s`);
  await metricsReads(store);
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

async function metricsReads(store: Store): Promise<void> {
  const fns: FunctionRecord[] = [];
  for (let f = 0; f < functions; f++) {
    fns.push(await store.createFunction({
      id: `f${f}`, name: `f${f}`, runtime: 'node', code: 'x', handler: 'handler', env_vars: {}, timeout_seconds: 30, memory_mb: 256,
      vcpu: 1, max_concurrency: 100, vm_id: null, guest_ip: null, port: null, state: 'ready', error: null, version: 1,
    }));
  }
  const now = Date.now();
  let n = 0;
  for (let m = 0; m < 1440; m++) {
    await Promise.all(fns.flatMap((fn) => [0, 1, 2].map(() => store.recordInvocation({
      id: `m${n}`, function_id: fn.id, request_id: `m${n}`, status: 'success', duration_ms: 0.5 + (n++ % 500) * 1.3,
      invoked_at: new Date(now - m * 60_000).toISOString(), version: 1, cold_start: false, logs: [], error: null, attempt: 1, async: false,
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

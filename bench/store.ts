// The store alone on a real SQLite file: one recordInvocation at a time (the commit an invoke waits for) and
// records/s with 32 concurrent writers (group commit). BENCH_RECORDS (default 5000) per figure.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../src/store/sqlite.js';
import type { InvocationRecord } from '../src/store/types.js';
import { ms, percentile, row, timeEach } from './stats.js';

const records = Number(process.env.BENCH_RECORDS ?? 5000);
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
    invoked_at: new Date().toISOString(), version: 1, cold_start: false, logs: ['a line'], error: null,
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
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}

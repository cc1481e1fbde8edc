// Waking sleeping functions: one whose top-level code takes 1.5 s, from its snapshot (SnapStart) and, as the
// baseline measured in the same run, by initialising again (SnapStart off); a small function; 20 sleeping
// functions woken at once. Functions sleep after 1 s idle here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type Server } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { ms, percentile, row } from './stats.js';

const wakes = Number(process.env.BENCH_WAKES ?? 10);
const crowd = Number(process.env.BENCH_CROWD ?? 20);
const slowCode = 'const initAt = Date.now(); const until = initAt + 1500; while (Date.now() < until); exports.handler = () => initAt;';

interface Bench {
  server: Server;
  api(path: string, method?: string, body?: unknown): Promise<any>;
  close(): Promise<void>;
}

async function bench(snapshotDiskMb: number): Promise<Bench> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-snapbench-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, idleSeconds: 1, snapshotDiskMb, poolSize: 2, logLevel: 'warn' };
  const server = await startServer(config, () => {});
  return {
    server,
    async api(path, method = 'GET', body) {
      const response = await fetch(server.url + path, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
      return response.json();
    },
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function deploy(b: Bench, name: string, runtime: string, code: string): Promise<any> {
  const { id } = await b.api('/v1/functions', 'POST', { name, runtime, code });
  for (;;) {
    const { item } = await b.api(`/v1/functions/${id}`);
    if (item.state === 'ready') return item;
    if (item.state === 'error') throw new Error(item.error);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function asleep(b: Bench, name: string): Promise<void> {
  while ((await b.api(`/v1/functions/${name}`)).item.vm_id !== null) await new Promise((resolve) => setTimeout(resolve, 50));
  await b.server.pool.settled(); // a woken function finds the warm pool as a user arriving later would
}

/** Invoke latency of `name` right after it went to sleep, `wakes` times; checks every one was a cold start. */
async function wakeTimes(b: Bench, name: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < wakes; i++) {
    await asleep(b, name);
    const started = performance.now();
    const result = await b.api(`/v1/functions/${name}/invoke`, 'POST', { event: {} });
    samples.push(performance.now() - started);
    if (result.status !== 'success' || !result.cold_start) throw new Error(`${name}: ${JSON.stringify(result)}`);
  }
  return samples;
}

const p50p95 = (samples: number[]) => `${ms(percentile(samples, 50))} / ${ms(percentile(samples, 95))}`;

async function main(): Promise<void> {
  const on = await bench(8192);
  try {
    const slow = await deploy(on, 'slow', 'node', slowCode);
    row('slow function: init, snapshot on disk', `${ms(slow.init_ms)}, ${(slow.snapshot_bytes / 2 ** 20).toFixed(1)} MiB (lz4)`);
    const snap = await wakeTimes(on, 'slow');
    row('slow function wake from its snapshot p50 / p95', p50p95(snap));

    const off = await bench(0);
    let again: number[];
    try {
      await deploy(off, 'slow', 'node', slowCode);
      again = await wakeTimes(off, 'slow');
    } finally {
      await off.close();
    }
    row('slow function wake re-running init (SnapStart off) p50 / p95', p50p95(again));
    row('ratio SnapStart / re-init (p50)', (percentile(snap, 50) / percentile(again, 50)).toFixed(2));

    await deploy(on, 'small', 'node', 'exports.handler = () => 1');
    row('small function wake (warm pool + load) p50 / p95', p50p95(await wakeTimes(on, 'small')));

    const names = Array.from({ length: crowd }, (_, i) => `crowd-${i}`);
    for (const [i, name] of names.entries()) {
      if (i % 2) await deploy(on, name, 'python', `def handler(event):\n    return ${i}`);
      else await deploy(on, name, 'node', `exports.handler = () => ${i}`);
    }
    for (const name of names) await asleep(on, name);
    const started = performance.now();
    const answered = await Promise.all(names.map(async (name) => {
      const result = await on.api(`/v1/functions/${name}/invoke`, 'POST', { event: {} });
      if (result.status !== 'success' || !result.cold_start) throw new Error(`${name}: ${JSON.stringify(result)}`);
      return performance.now() - started;
    }));
    row(`${crowd} sleeping functions woken at once: p50 / last answer`, `${ms(percentile(answered, 50))} / ${ms(Math.max(...answered))}`);
  } finally {
    await on.close();
  }
}

await main();

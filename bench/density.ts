// Many more functions than fit in memory at once: deploy N (default 500) with scale to zero and a cap on live
// VMs (least recently used functions sleep first), then show they are all listed ready, how many VMs were
// alive at most, host memory used, and cold-start invoke latency (every wake a cold start).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { ms, percentile, row } from './stats.js';

const count = Number(process.env.BENCH_FUNCTIONS ?? 500);
const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const maxLiveVms = Number(process.env.BENCH_MAX_LIVE_VMS ?? 32);

function memAvailableMiB(): number {
  const line = readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('MemAvailable:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-density-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, idleSeconds, maxLiveVms, logLevel: 'warn' };
  const server = await startServer(config, () => {});
  const base = server.url;
  const api = async (path: string, method = 'GET', body?: unknown) => {
    const r = await fetch(base + path, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
    return r.json();
  };
  const memBefore = memAvailableMiB();
  let maxVms = 0;
  let minMem = memBefore;
  const sampler = setInterval(() => {
    maxVms = Math.max(maxVms, liveProcessCount());
    minMem = Math.min(minMem, memAvailableMiB());
  }, 200);
  const started = performance.now();
  try {
    const ids: string[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < count) {
        const i = next++;
        const runtime = i % 2 ? 'python' : 'node';
        const code = runtime === 'node' ? `exports.handler = () => ${i}` : `def handler(event):\n    return ${i}`;
        const { id } = await api('/v1/functions', 'POST', { name: `fn-${i}`, runtime, code });
        ids.push(id);
        for (;;) {
          const { item } = await api(`/v1/functions/${id}`);
          if (item.state === 'ready') break;
          if (item.state === 'error') throw new Error(item.error);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    }));
    const deploySeconds = (performance.now() - started) / 1000;
    const { items } = await api('/v1/functions');
    const ready = items.filter((f: any) => f.state === 'ready').length;
    const withVm = items.filter((f: any) => f.vm_id !== null).length;
    if (withVm > maxLiveVms) throw new Error(`${withVm} functions hold a VM, over the cap of ${maxLiveVms}`);
    const cold: number[] = [];
    const asleep = Math.max(1, count - 2 * maxLiveVms); // the first ones deployed were made to sleep
    for (let k = 0; k < 20; k++) {
      const i = Math.floor((k * asleep) / 20);
      const t = performance.now();
      const result = await api(`/v1/functions/fn-${i}/invoke`, 'POST', { event: {} });
      cold.push(performance.now() - t);
      if (result.response !== i || !result.cold_start) throw new Error(`fn-${i}: ${JSON.stringify(result)}`);
    }
    row('functions deployed and listed ready', `${ready} / ${count} in ${deploySeconds.toFixed(0)} s; ${withVm} hold a VM`);
    row('VMs alive at most (warm pool included)', `${maxVms} (cap FNVM_MAX_LIVE_VMS=${maxLiveVms}, idle after ${idleSeconds} s)`);
    row('host memory used at most', `${(memBefore - minMem).toFixed(0)} MiB`);
    row('cold-start invoke (restore + load) p50 / max', `${ms(percentile(cold, 50))} / ${ms(Math.max(...cold))}`);
  } finally {
    clearInterval(sampler);
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();

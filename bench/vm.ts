// MicroVM layer figures: cold boot, snapshot, restore, channel round trip vs the same agent as a local process.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, ensureImages } from '../src/images/build.js';
import { startLocalAgent } from '../src/guest/local-agent.js';
import type { GuestChannel } from '../src/guest/channel.js';
import { identityHandler } from '../src/guest/warmup.js';
import { createQemuDriver } from '../src/vm/driver.js';
import { ms, percentile, row, timeEach } from './stats.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const trips = Number(process.env.BENCH_TRIPS ?? 2000);

async function roundTrips(channel: GuestChannel): Promise<number[]> {
  const invoke = () => channel.request('invoke', { request_id: 'b', event: { n: 1 }, timeout_ms: 5000 });
  await timeEach(500, invoke); // warm-up: JIT and first-touch page faults
  return timeEach(trips, invoke);
}

async function main(): Promise<void> {
  const images = await ensureImages((m) => process.stderr.write(`[images] ${m}\n`));
  const runRoot = mkdtempSync(join(tmpdir(), 'fnvm-b-'));
  const driver = await createQemuDriver({ images, runRoot, cacheDir: cacheDir() });
  row('accelerator', `${driver.accel} (${driver.accelReason})`);
  try {
    for (const runtime of ['node', 'python'] as const) {
      const spec = { runtime, vcpu: 1, memoryMb: 256, network: 'none' as const };
      const boots: number[] = [];
      const snaps: number[] = [];
      const restores: number[] = [];
      let bytes = 0;
      let inVm: number[] = [];
      for (let i = 0; i < runs; i++) {
        let start = performance.now();
        const vm = await driver.boot(spec);
        boots.push(performance.now() - start);
        await vm.channel.request('load', { code: identityHandler[runtime], handler: 'handler', env: {}, version: 1 });
        start = performance.now();
        const snapshot = await vm.snapshot(join(runRoot, `${runtime}.vmstate`));
        snaps.push(performance.now() - start);
        bytes = snapshot.bytes;
        await vm.stop();
        start = performance.now();
        const restored = await driver.restore(snapshot);
        await restored.channel.request('invoke', { request_id: 'r', event: {}, timeout_ms: 5000 });
        restores.push(performance.now() - start);
        if (i === 0) inVm = await roundTrips(restored.channel); // restored VMs are the ones that serve
        await restored.stop();
      }
      const local = startLocalAgent(runtime);
      await local.channel.request('load', { code: identityHandler[runtime], handler: 'handler', env: {}, version: 1 });
      const floor = await roundTrips(local.channel);
      await local.stop();
      const p50 = percentile(inVm, 50);
      const floorP50 = percentile(floor, 50);
      row(`[${runtime}] cold boot to agent ready (p50 of ${runs})`, ms(percentile(boots, 50)));
      row(`[${runtime}] snapshot (p50)`, `${ms(percentile(snaps, 50))}, ${(bytes / 2 ** 20).toFixed(1)} MiB`);
      row(`[${runtime}] restore to first invoke reply (p50)`, ms(percentile(restores, 50)));
      row(`[${runtime}] VM round trip p50 / p99`, `${ms(p50)} / ${ms(percentile(inVm, 99))}`);
      row(`[${runtime}] local-process round trip p50 / p99`, `${ms(floorP50)} / ${ms(percentile(floor, 99))}`);
      row(`[${runtime}] VM / local p50 ratio`, `${(p50 / floorP50).toFixed(2)}x`);
    }
  } finally {
    rmSync(runRoot, { recursive: true, force: true });
  }
}

await main();

// MicroVM layer figures: cold boot, snapshot, restore, channel round trip vs the same agent as a local process.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalAgent } from '../src/guest/local-agent.js';
import type { GuestChannel } from '../src/guest/channel.js';
import { identityHandler } from '../src/guest/warmup.js';
import { bestSample, offsetOf } from '../src/vm/guest-clock.js';
import { benchDriver } from './driver.js';
import { ms, percentile, row, timeEach } from './stats.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const trips = Number(process.env.BENCH_TRIPS ?? 2000);
const clockSeconds = Number(process.env.BENCH_CLOCK_SECONDS ?? 60);

/** Guest wall clock minus the host's, from the best of a few pings. */
async function clockOffset(channel: GuestChannel): Promise<number> {
  return offsetOf(await bestSample(channel, { clock: 'wall', tries: 8, timeoutMs: 5000, goodEnoughMs: 2 }));
}

async function roundTrips(channel: GuestChannel): Promise<number[]> {
  const invoke = () => channel.request('invoke', { request_id: 'b', event: { n: 1 }, timeout_ms: 5000 });
  await timeEach(500, invoke); // warm-up: JIT and first-touch page faults
  return timeEach(trips, invoke);
}

async function main(): Promise<void> {
  const { driver, runRoot } = await benchDriver();
  try {
    for (const runtime of ['node', 'python'] as const) {
      const spec = { runtime, vcpu: 1, memoryMb: 256, network: 'none' as const };
      const boots: number[] = [];
      const snaps: number[] = [];
      const restores: number[] = [];
      let bytes = 0;
      let inVm: number[] = [];
      let clock = { afterRestore: NaN, later: NaN, renew: NaN };
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
        if (i === 0) {
          const afterRestore = await clockOffset(restored.channel);
          inVm = await roundTrips(restored.channel); // restored VMs are the ones that serve
          const renew = await timeEach(20, () => restored.channel.request('renew', { seed: 'ab'.repeat(32), time_ms: Date.now() }));
          await restored.syncClock(); // the renews set the clock coarsely: start the drift measurement exact
          const before = await clockOffset(restored.channel);
          await new Promise((resolve) => setTimeout(resolve, clockSeconds * 1000)); // no watchdog: nothing corrects it
          clock = { afterRestore, later: (await clockOffset(restored.channel)) - before, renew: percentile(renew, 50) };
        }
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
      row(`[${runtime}] guest clock offset right after restore`, ms(clock.afterRestore));
      row(`[${runtime}] guest clock drift over ${clockSeconds} s, uncorrected`, `${ms(clock.later)} (${((clock.later / (clockSeconds * 1000)) * 1e6).toFixed(0)} ppm)`);
      row(`[${runtime}] renew (set clock, reseed) round trip p50`, ms(clock.renew));
    }
  } finally {
    rmSync(runRoot, { recursive: true, force: true });
  }
}

await main();

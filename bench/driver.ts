// The VM driver the VM-level benchmarks use: the cached guest images, a temporary run directory, the accelerator row.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, ensureImages } from '../src/images/build.js';
import { createQemuDriver, type VmDriver } from '../src/vm/driver.js';
import { row } from './stats.js';

export async function benchDriver(): Promise<{ driver: VmDriver; runRoot: string }> {
  const images = await ensureImages((m) => process.stderr.write(`[images] ${m}\n`));
  const runRoot = mkdtempSync(join(tmpdir(), 'fnvm-b-'));
  const driver = await createQemuDriver({ images, runRoot, cacheDir: cacheDir() });
  row('accelerator', `${driver.accel} (${driver.accelReason})`);
  return { driver, runRoot };
}

// Chooses the accelerator by trying it: KVM only if a guest kernel really boots under it within a few
// seconds (a PVM-only /dev/kvm hangs stock kernels), else TCG. Results are cached per host and image.
import { constants, existsSync } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { killTracked, spawnTracked } from './processes.js';
import { probeArgs, type BootFiles } from './qemu-args.js';
import type { Accelerator } from './spec.js';

export interface AccelChoice {
  accel: Accelerator;
  reason: string;
}

const probeTimeoutMs = 8000;
const marker = 'FNVM_PROBE_OK';

export async function chooseAccelerator(boot: Omit<BootFiles, 'rootfs'>, cacheFile: string): Promise<AccelChoice> {
  const forced = process.env.FNVM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: 'FNVM_ACCEL' };
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  }
  const key = `${release()}|${boot.kernel}|${boot.initramfs}`;
  if (existsSync(cacheFile)) {
    const cached = JSON.parse(await readFile(cacheFile, 'utf8')) as AccelChoice & { key: string };
    if (cached.key === key) return { accel: cached.accel, reason: `${cached.reason} (cached probe)` };
  }
  const choice = (await bootsUnder('kvm', boot))
    ? { accel: 'kvm' as const, reason: 'KVM probe booted a guest' }
    : { accel: 'tcg' as const, reason: `KVM probe guest did not boot within ${probeTimeoutMs} ms` };
  await mkdir(join(cacheFile, '..'), { recursive: true });
  await writeFile(cacheFile, JSON.stringify({ ...choice, key }));
  return choice;
}

/** Boots kernel + initramfs in probe mode under `accel`; true if the guest reached its init. */
export async function bootsUnder(accel: Accelerator, boot: Omit<BootFiles, 'rootfs'>, timeoutMs = probeTimeoutMs): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'fnvm-probe-'));
  const log = join(dir, 'console.log');
  const child = spawnTracked('qemu-system-x86_64', probeArgs(accel, boot, log));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timer = setTimeout(() => killTracked(child), timeoutMs);
  await exited;
  clearTimeout(timer);
  const output = existsSync(log) ? await readFile(log, 'utf8') : '';
  await rm(dir, { recursive: true, force: true });
  return output.includes(marker);
}

// Real guest images and a real QEMU driver for tests. Fails loudly if the machine lacks what they need.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand } from '../../src/exec.js';
import { cacheDir, ensureImages, type GuestImages } from '../../src/images/build.js';
import { createQemuDriver, type VmDriver } from '../../src/vm/driver.js';

function requireCommand(command: string, hint: string): void {
  if (!hasCommand(command)) {
    throw new Error(`this test needs ${command} (${hint}); run .ci/run or install it`);
  }
}

let images: Promise<GuestImages> | undefined;

export function testImages(): Promise<GuestImages> {
  requireCommand('qemu-system-x86_64', 'apt-get install qemu-system-x86');
  requireCommand('mkfs.ext4', 'apt-get install e2fsprogs');
  requireCommand('cpio', 'apt-get install cpio');
  images ??= ensureImages((m) => process.stderr.write(`[images] ${m}\n`));
  return images;
}

export interface TestDriver {
  driver: VmDriver;
  runRoot: string;
  cleanup(): void;
}

export async function testDriver(): Promise<TestDriver> {
  const runRoot = mkdtempSync(join(tmpdir(), 'fnvm-t-'));
  const driver = await createQemuDriver({ images: await testImages(), runRoot, cacheDir: cacheDir() });
  return { driver, runRoot, cleanup: () => rmSync(runRoot, { recursive: true, force: true }) };
}

/** True if a process with this PID exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

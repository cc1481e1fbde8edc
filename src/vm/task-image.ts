// The files that back a VM's task disk: the shared all-zero placeholder every VM starts with, and the checks
// a package's image passes before a VM is given it.
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { taskDiskBytes } from './task-disk.js';

export class TaskImageError extends Error {
  override name = 'TaskImageError';
}

/**
 * The placeholder in `dir`, created if missing: a sparse all-zero file of exactly taskDiskBytes (no disk
 * blocks). Opened read-only by every VM, so it is never written after this.
 */
export async function ensurePlaceholder(dir: string): Promise<string> {
  const path = join(dir, `task-placeholder-${taskDiskBytes}.img`);
  if (existsSync(path) && statSync(path).size === taskDiskBytes) return path;
  await mkdir(dir, { recursive: true });
  // Made under a private name, then renamed: two servers starting at once never see half a file.
  const partial = `${path}.${randomUUID().slice(0, 8)}.partial`;
  const file = await open(partial, 'wx');
  try {
    await file.truncate(taskDiskBytes);
  } finally {
    await file.close();
  }
  await rename(partial, path);
  return path;
}

/**
 * The absolute path of `image` if it can back a task disk: a regular file of exactly taskDiskBytes (the guest
 * read the device's capacity once, at boot, and would never see another size).
 */
export async function checkTaskImage(image: string): Promise<string> {
  const path = resolve(image);
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) throw new TaskImageError(`task image ${path} is not a file`);
  if (info.size !== taskDiskBytes) {
    throw new TaskImageError(`task image ${path} is ${info.size} bytes; a task disk is exactly ${taskDiskBytes}`);
  }
  return path;
}

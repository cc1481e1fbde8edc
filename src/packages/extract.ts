// Unpacks an inspected zip into an empty directory, as the read-only image will hold it: directories 0755, files
// 0644 (0755 if the zip marks them executable), mtimes from the zip. Entries stream in parallel on libuv's pool;
// the first refusal stops the rest, and every write has ended by the time this settles (so the caller can remove
// the directory at once).
import { chmod, mkdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { writeEntry } from './entry-data.js';
import { PackageError, packageLimits } from './types.js';
import type { ZipInspection } from './zip.js';

/** Entries being written at once: enough to keep libuv's 4 threads (inflate, write) busy on a 2-core host. */
const parallelEntries = 8;

export async function extractZip(zip: Buffer, inspection: ZipInspection, root: string): Promise<void> {
  const masked = (0o755 & process.umask()) !== 0;
  for (const dir of directoriesOf(inspection)) {
    const path = join(root, dir);
    await mkdir(path, 0o755);
    if (masked) await chmod(path, 0o755);
  }
  const files = inspection.entries.filter((e) => e.kind === 'file');
  let next = 0;
  let written = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (errors.length === 0 && next < files.length) {
      const entry = files[next++];
      if (!entry) break;
      try {
        await writeEntry(zip, entry, join(root, entry.path), entry.executable ? 0o755 : 0o644);
        // Each entry is held to its declared size, and the declared sizes to the limit; this holds the total too.
        written += entry.size;
        if (written > packageLimits.unpackedBytes) throw new PackageError(`unzipped, the package is over ${packageLimits.unpackedBytes} bytes`);
      } catch (error) {
        errors.push(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallelEntries, files.length) }, worker));
  if (errors.length > 0) throw errors[0];
  // Written last: adding files above changed the directories' mtimes.
  for (const entry of inspection.entries) {
    if (entry.kind === 'directory') await utimes(join(root, entry.path), entry.mtime, entry.mtime);
  }
}

/** Every directory the package has, given or implied by a file's path, parents before children. */
export function directoriesOf(inspection: ZipInspection): string[] {
  const dirs = new Set<string>();
  for (const entry of inspection.entries) {
    const segments = entry.path.split('/');
    const own = entry.kind === 'directory' ? segments.length : segments.length - 1;
    for (let i = 1; i <= own; i++) dirs.add(segments.slice(0, i).join('/'));
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || (a < b ? -1 : a > b ? 1 : 0));
}

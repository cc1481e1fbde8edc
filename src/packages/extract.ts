// Unpacks an inspected zip into an empty directory, as the read-only image will hold it: directories 0755, files
// 0644 (0755 if the zip marks them executable), mtimes from the zip. Large entries stream on libuv's pool while
// the small ones are written on the event loop in slices of a few milliseconds. The first refusal stops the rest,
// and every write has ended by the time this settles (so the caller can remove the directory at once).
import { chmod, mkdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { streamEntry, wholeEntryBytes, writeEntrySync } from './entry-data.js';
import type { ZipEntry, ZipInspection } from './zip.js';

/** Large entries streaming at once: each keeps a pool thread inflating and one writing. */
const parallelStreams = 2;
/** Longest the event loop is held by small entries' writes before other work gets a turn. */
const sliceMs = 5;

export async function extractZip(zip: Buffer, inspection: ZipInspection, root: string): Promise<void> {
  const masked = (0o755 & process.umask()) !== 0;
  for (const dir of directoriesOf(inspection)) {
    const path = join(root, dir);
    await mkdir(path, 0o755);
    if (masked) await chmod(path, 0o755);
  }
  const files = inspection.entries.filter((e) => e.kind === 'file');
  const modeOf = (entry: ZipEntry) => (entry.executable ? 0o755 : 0o644);
  const errors: unknown[] = [];
  const large = files.filter((e) => e.size > wholeEntryBytes);
  const streamer = async () => {
    for (let entry = large.shift(); entry && errors.length === 0; entry = large.shift()) {
      try {
        await streamEntry(zip, entry, join(root, entry.path), modeOf(entry));
      } catch (error) {
        errors.push(error);
      }
    }
  };
  const streaming = Promise.all(Array.from({ length: parallelStreams }, streamer));
  try {
    let sliceStart = performance.now();
    for (const entry of files) {
      if (errors.length > 0) break;
      if (entry.size > wholeEntryBytes) continue;
      writeEntrySync(zip, entry, join(root, entry.path), modeOf(entry));
      if (performance.now() - sliceStart > sliceMs) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
    }
  } catch (error) {
    errors.push(error);
  }
  await streaming;
  // Each entry stopped at the size it declares, and the declared sizes add up to at most the limit (inspectZip):
  // so the bytes written in all are within the limit too.
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

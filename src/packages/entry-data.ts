// The data of an inspected zip entry, inflated and held to what the central directory declared: a stream that
// inflates past the declared size stops there (a zip bomb fills neither memory nor disk), one that ends short
// or with another CRC-32 is refused. Small entries are inflated and written whole, synchronously (the caller
// slices the work so that the event loop still turns): that is 2-3 times faster than a pool round trip per
// system call for a tree of thousands of small files. Large ones stream to disk on libuv's pool.
import { createWriteStream, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createInflateRaw, crc32, inflateRaw, inflateRawSync } from 'node:zlib';
import { PackageError } from './types.js';
import type { ZipEntry } from './zip.js';

/** Entries up to this size are inflated whole into memory (a few milliseconds at most); larger ones stream. */
export const wholeEntryBytes = 1 << 20;
const inflateRawAsync = promisify(inflateRaw);

/** The entry's bytes, inflated on libuv's pool (reading one file back for the console). */
export async function entryBytes(zip: Buffer, entry: ZipEntry): Promise<Buffer> {
  const raw = rawData(zip, entry);
  let data = raw;
  if (entry.method === 8) {
    try {
      // One byte more than declared is let through, so that "more than declared" is seen as such.
      data = await inflateRawAsync(raw, { maxOutputLength: entry.size + 1 });
    } catch (error) {
      throw inflateError(entry, error);
    }
  }
  return checked(entry, data);
}

/** The bytes of a small entry (up to `wholeEntryBytes`), inflated on the calling thread. */
export function entryBytesSync(zip: Buffer, entry: ZipEntry): Buffer {
  const raw = rawData(zip, entry);
  let data = raw;
  if (entry.method === 8) {
    try {
      data = inflateRawSync(raw, { maxOutputLength: entry.size + 1 });
    } catch (error) {
      throw inflateError(entry, error);
    }
  }
  return checked(entry, data);
}

/** Writes a small entry to a new file at `path` with `mode` (exactly, whatever the umask) and the entry's mtime. */
export function writeEntrySync(zip: Buffer, entry: ZipEntry, path: string, mode: number): void {
  writeFileSync(path, entryBytesSync(zip, entry), { flag: 'wx', mode });
  if ((mode & process.umask()) !== 0) chmodSync(path, mode);
  utimesSync(path, entry.mtime, entry.mtime);
}

/** Streams a large entry to a new file at `path`, checked as it goes, with `mode` and the entry's mtime. */
export async function streamEntry(zip: Buffer, entry: ZipEntry, path: string, mode: number): Promise<void> {
  const check = new CheckedBytes(entry);
  const out = createWriteStream(path, { flags: 'wx', mode });
  const raw = rawData(zip, entry);
  if (entry.method === 0) {
    check.end(raw);
    await pipeline(check, out);
  } else {
    const inflate = createInflateRaw();
    inflate.end(raw);
    try {
      await pipeline(inflate, check, out);
    } catch (error) {
      throw error instanceof PackageError ? error : inflateError(entry, error);
    }
  }
  const file = await open(path, 'r');
  try {
    if ((mode & process.umask()) !== 0) await file.chmod(mode);
    await file.utimes(entry.mtime, entry.mtime);
  } finally {
    await file.close();
  }
}

function checked(entry: ZipEntry, data: Buffer): Buffer {
  if (data.length > entry.size) throw tooLong(entry);
  if (data.length < entry.size) throw tooShort(entry, data.length);
  if (crc32(data) !== entry.crc32) throw badCrc(entry);
  return data;
}

function rawData(zip: Buffer, entry: ZipEntry): Buffer {
  // yauzl checked that the data lies within the zip when it read the local header.
  return zip.subarray(entry.dataStart, entry.dataStart + entry.compressedSize);
}

/** Counts and checksums the bytes going through; fails (and so ends the pipeline) at the first byte too many. */
class CheckedBytes extends Transform {
  private bytes = 0;
  private crc = 0;

  constructor(private readonly entry: ZipEntry) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.entry.size) return callback(tooLong(this.entry));
    this.crc = crc32(chunk, this.crc);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.bytes < this.entry.size) return callback(tooShort(this.entry, this.bytes));
    if (this.crc !== this.entry.crc32) return callback(badCrc(this.entry));
    callback();
  }
}

function tooLong(entry: ZipEntry): PackageError {
  return new PackageError(`entry "${entry.path}": inflates to more than the ${entry.size} bytes it declares (a zip bomb?)`);
}

function tooShort(entry: ZipEntry, bytes: number): PackageError {
  return new PackageError(`entry "${entry.path}": inflates to ${bytes} bytes, not the ${entry.size} it declares`);
}

function badCrc(entry: ZipEntry): PackageError {
  return new PackageError(`entry "${entry.path}": CRC-32 mismatch (the zip is corrupt)`);
}

function inflateError(entry: ZipEntry, error: unknown): PackageError {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  if (code === 'ERR_BUFFER_TOO_LARGE') return tooLong(entry);
  return new PackageError(`entry "${entry.path}": its deflate data is corrupt (${error instanceof Error ? error.message : String(error)})`);
}

// The data of an inspected zip entry, inflated and held to what the central directory declared: a stream that
// inflates past the declared size stops there (a zip bomb fills neither memory nor disk), one that ends short
// or with another CRC-32 is refused. Small entries inflate in one call on libuv's pool; large ones stream to disk.
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createInflateRaw, crc32, inflateRaw, inflateRawSync } from 'node:zlib';
import { PackageError } from './types.js';
import type { ZipEntry } from './zip.js';

/** Entries up to this size are inflated whole into memory; larger ones stream through a fixed-size buffer. */
const wholeEntryBytes = 1 << 20;
/** Entries up to this size inflate on the event loop: microseconds, less than a trip to the pool costs. */
const syncEntryBytes = 64 << 10;
const inflateRawAsync = promisify(inflateRaw);

/** The entry's bytes (for a small entry, or one file read back for the console). */
export async function entryBytes(zip: Buffer, entry: ZipEntry): Promise<Buffer> {
  const raw = rawData(zip, entry);
  let data: Buffer;
  if (entry.method === 0) data = raw;
  else {
    try {
      // One byte more than declared is allowed through, so that "more than declared" is seen as such.
      const options = { maxOutputLength: entry.size + 1 };
      data = entry.size <= syncEntryBytes ? inflateRawSync(raw, options) : await inflateRawAsync(raw, options);
    } catch (error) {
      throw inflateError(entry, error);
    }
  }
  if (data.length > entry.size) throw tooLong(entry);
  if (data.length < entry.size) throw tooShort(entry, data.length);
  if (crc32(data) !== entry.crc32) throw badCrc(entry);
  return data;
}

/** Writes the entry's bytes to a new file at `path` with `mode` and the entry's mtime. */
export async function writeEntry(zip: Buffer, entry: ZipEntry, path: string, mode: number): Promise<void> {
  // The mode is exact: set again (one more system call) only if the umask took bits from it.
  const masked = (mode & process.umask()) !== 0;
  if (entry.size <= wholeEntryBytes) {
    const data = await entryBytes(zip, entry);
    const file = await open(path, 'wx', mode);
    try {
      await file.writeFile(data);
      if (masked) await file.chmod(mode);
      await file.utimes(entry.mtime, entry.mtime);
    } finally {
      await file.close();
    }
    return;
  }
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
    if (masked) await file.chmod(mode);
    await file.utimes(entry.mtime, entry.mtime);
  } finally {
    await file.close();
  }
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

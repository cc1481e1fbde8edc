// Inspection of an uploaded zip, from its central directory and local headers: everything that can be refused
// without inflating a byte (names that escape, links, duplicates, encryption, methods, declared sizes). It writes
// nothing; the inflated bytes are checked against what is declared here while they stream (entry-data.ts).
import { createHash } from 'node:crypto';
import yauzl from 'yauzl';
import { PackageError, packageLimits, type PackageInfo } from './types.js';

export { PackageError } from './types.js';

/** One entry of an inspected zip: where its data is and what it must inflate to. */
export interface ZipEntry {
  /** Normalised relative path: no leading or trailing '/', no empty or '.' segments. */
  path: string;
  kind: 'file' | 'directory';
  /** Declared (and, once streamed, verified) inflated size; 0 for a directory. */
  size: number;
  /** The zip's unix mode has an execute bit: the file gets 0755 instead of 0644. */
  executable: boolean;
  mtime: Date;
  crc32: number;
  method: CompressionMethod;
  /** Offset of the entry's data in the zip and its length there. */
  dataStart: number;
  compressedSize: number;
}

export interface ZipInspection {
  info: PackageInfo;
  /** In the zip's order. */
  entries: ZipEntry[];
}

type CompressionMethod = 0 | 8;
const methods: Record<number, string> = { 1: 'shrink', 6: 'implode', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz', 98: 'ppmd' };

// Unix file types in the high 16 bits of externalFileAttributes (when the zip was made on unix).
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const dosDirectory = 0x10;

const flagEncrypted = 0x1;
const flagDataDescriptor = 0x8;
/** Longest name ext4 takes for one path segment, and Linux's longest path. */
const maxSegmentBytes = 255;
const maxPathBytes = 4095;

/**
 * Reads the zip's directory and refuses (PackageError, the message naming the entry) anything fnvm will not unpack.
 * A zip that passes can still be refused while its data streams (a size or CRC that does not hold). `sha256` is the
 * zip's, if the caller has it already.
 */
export async function inspectZip(zip: Buffer, sha256 = createHash('sha256').update(zip).digest('hex')): Promise<ZipInspection> {
  if (zip.length > packageLimits.zippedBytes) {
    throw new PackageError(`the zip is ${zip.length} bytes: at most ${packageLimits.zippedBytes} (${packageLimits.zippedBytes / 2 ** 20} MiB)`);
  }
  const file = await open(zip);
  try {
    if (file.entryCount > packageLimits.entries) throw new PackageError(`the zip has ${file.entryCount} entries: at most ${packageLimits.entries}`);
    const entries: ZipEntry[] = [];
    const tree = new PathTree();
    let unpacked = 0;
    for (let raw = await nextEntry(file); raw; raw = await nextEntry(file)) {
      const entry = checkEntry(zip, raw);
      if (entry === null) continue; // "./": the package root itself
      tree.add(entry);
      unpacked += entry.size;
      if (unpacked > packageLimits.unpackedBytes) {
        throw new PackageError(`unzipped, the package is over ${packageLimits.unpackedBytes / 2 ** 20} MiB (at entry "${entry.path}"): at most ${packageLimits.unpackedBytes} bytes`);
      }
      entries.push(entry);
    }
    const files = entries.filter((e) => e.kind === 'file').length;
    if (files === 0) throw new PackageError('the zip has no files');
    return { info: { sha256, size: zip.length, unpacked_size: unpacked, files }, entries };
  } finally {
    file.close();
  }
}

/** Normalises a path as `inspectZip` does (for looking a file up by a path a client gives); null if it is not one. */
export function normalisePath(name: string): string | null {
  if (name.includes('\\') || name.includes('\0') || name.startsWith('/') || /^[a-zA-Z]:/.test(name)) return null;
  const segments = name.split('/').filter((s) => s !== '' && s !== '.');
  return segments.includes('..') ? null : segments.join('/');
}

async function open(zip: Buffer): Promise<yauzl.ZipFile> {
  try {
    // Names and sizes are checked here, with messages that name the entry (and the data is read by entry-data.ts).
    return await yauzl.fromBufferPromise(zip, { lazyEntries: true, decodeStrings: false, validateEntrySizes: false, strictFileNames: true });
  } catch (error) {
    if (zip.length === 0) throw new PackageError('the package is empty: not a zip file');
    throw new PackageError(`not a zip file: ${(error as Error).message}`);
  }
}

function nextEntry(file: yauzl.ZipFile): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      file.off('entry', onEntry);
      file.off('end', onEnd);
      file.off('error', onError);
    };
    const onEntry = (entry: yauzl.Entry) => { cleanup(); resolve(entry); };
    const onEnd = () => { cleanup(); resolve(null); };
    const onError = (error: Error) => { cleanup(); reject(new PackageError(`not a valid zip: ${error.message}`)); };
    file.on('entry', onEntry);
    file.on('end', onEnd);
    file.on('error', onError);
    file.readEntry();
  });
}

function checkEntry(zip: Buffer, raw: yauzl.Entry): ZipEntry | null {
  const name = yauzl.getFileNameLowLevel(raw.generalPurposeBitFlag, raw.fileNameRaw, raw.extraFields, true);
  const refuse = (why: string) => new PackageError(`entry "${printable(name)}": ${why}`);
  if (name === '') throw new PackageError('an entry has an empty name');
  if (name.includes('\0')) throw refuse('its name has a NUL byte');
  if (name.includes('\\')) throw refuse('its name has a backslash (a Windows path separator): paths must use "/"');
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name)) throw refuse('an absolute path: paths must be relative to the package root');
  const path = normalisePath(name);
  if (path === null) throw refuse('a ".." segment: the path escapes the package');
  if (Buffer.byteLength(path) > maxPathBytes) throw refuse(`the path is over ${maxPathBytes} bytes`);
  if (path.split('/').some((s) => Buffer.byteLength(s) > maxSegmentBytes)) throw refuse(`a name in the path is over ${maxSegmentBytes} bytes`);

  const kind = kindOf(raw, name, refuse);
  if (raw.generalPurposeBitFlag & flagEncrypted) throw refuse('encrypted: packages cannot be encrypted');
  if (raw.compressionMethod !== 0 && raw.compressionMethod !== 8) {
    const label = methods[raw.compressionMethod] ?? 'unknown';
    throw refuse(`compression method ${raw.compressionMethod} (${label}) is not supported: only stored and deflate`);
  }
  if (kind === 'directory' && raw.uncompressedSize !== 0) throw refuse('a directory with content');
  if (raw.compressionMethod === 0 && raw.compressedSize !== raw.uncompressedSize) {
    throw refuse(`stored uncompressed, yet ${raw.compressedSize} bytes in the zip declare ${raw.uncompressedSize} unzipped`);
  }
  if (raw.uncompressedSize > packageLimits.unpackedBytes) {
    throw refuse(`unzips to ${raw.uncompressedSize} bytes: a package unzips to at most ${packageLimits.unpackedBytes} (${packageLimits.unpackedBytes / 2 ** 20} MiB)`);
  }
  const local = localHeader(zip, raw, refuse);
  if (path === '') {
    if (kind !== 'directory') throw refuse('not a file name');
    return null;
  }
  const mode = raw.externalFileAttributes >>> 16;
  return {
    path,
    kind,
    size: raw.uncompressedSize,
    executable: kind === 'file' && isUnixMode(mode) && (mode & 0o111) !== 0,
    mtime: raw.getLastModDate(),
    crc32: raw.crc32,
    method: raw.compressionMethod === 0 ? 0 : 8,
    dataStart: local.dataStart,
    compressedSize: raw.compressedSize,
  };
}

function kindOf(raw: yauzl.Entry, name: string, refuse: (why: string) => PackageError): 'file' | 'directory' {
  const mode = raw.externalFileAttributes >>> 16;
  const type = mode & S_IFMT;
  const slash = name.endsWith('/');
  if (type === S_IFLNK) throw refuse('a symlink: packages hold only files and directories');
  if (isUnixMode(mode) && type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
    throw refuse(`a special file (unix type 0o${type.toString(8)}): packages hold only files and directories`);
  }
  if (type === S_IFDIR || slash || (type === 0 && (raw.externalFileAttributes & dosDirectory) !== 0)) {
    if (type === S_IFREG) throw refuse('a regular file whose name ends in "/"');
    return 'directory';
  }
  return 'file';
}

/** Zips made off unix leave the high bits 0 (no type, no mode bits): those say nothing. */
function isUnixMode(mode: number): boolean {
  return mode !== 0;
}

interface LocalHeader {
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  name: Buffer;
  dataStart: number;
}

/**
 * The entry's local header, which must agree with the central directory: a zip that says two things (another name,
 * method, encryption or size where the data is) is read differently by different tools, so it is refused. Read
 * from the buffer here rather than through yauzl's asynchronous reader: thousands of entries, 30 bytes each.
 */
function localHeader(zip: Buffer, raw: yauzl.Entry, refuse: (why: string) => PackageError): LocalHeader {
  const at = raw.relativeOffsetOfLocalHeader;
  if (at + 30 > zip.length) throw refuse(`its local header is unreadable: offset ${at} is past the end of the zip`);
  if (zip.readUInt32LE(at) !== 0x04034b50) throw refuse('its local header is unreadable: no local header signature where the central directory points');
  const nameLength = zip.readUInt16LE(at + 26);
  const dataStart = at + 30 + nameLength + zip.readUInt16LE(at + 28);
  if (dataStart + raw.compressedSize > zip.length) throw refuse('its local header is unreadable: its data runs past the end of the zip');
  const local: LocalHeader = {
    flags: zip.readUInt16LE(at + 6),
    method: zip.readUInt16LE(at + 8),
    crc32: zip.readUInt32LE(at + 14),
    compressedSize: zip.readUInt32LE(at + 18),
    uncompressedSize: zip.readUInt32LE(at + 22),
    name: zip.subarray(at + 30, at + 30 + nameLength),
    dataStart,
  };
  const disagrees = (what: string) => refuse(`its local header disagrees with the central directory (${what})`);
  if (!local.name.equals(raw.fileNameRaw)) throw disagrees(`name "${printable(local.name.toString('utf8'))}"`);
  if (local.method !== raw.compressionMethod) throw disagrees(`compression method ${local.method}`);
  if ((local.flags & flagEncrypted) !== (raw.generalPurposeBitFlag & flagEncrypted)) throw disagrees('encryption');
  // With a data descriptor the sizes and CRC follow the data, and the local header has zeros; 0xffffffff is zip64's.
  if (!(local.flags & flagDataDescriptor)) {
    if (local.crc32 !== raw.crc32) throw disagrees('CRC-32');
    if (local.uncompressedSize !== 0xffffffff && local.uncompressedSize !== raw.uncompressedSize) throw disagrees(`size ${local.uncompressedSize}`);
    if (local.compressedSize !== 0xffffffff && local.compressedSize !== raw.compressedSize) throw disagrees(`compressed size ${local.compressedSize}`);
  }
  return local;
}

/** Files and directories seen so far, implied parents included: one name is never both, nor twice. */
class PathTree {
  private readonly kinds = new Map<string, { kind: 'file' | 'directory'; explicit: boolean }>();

  add(entry: ZipEntry): void {
    const segments = entry.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      const seen = this.kinds.get(parent);
      if (seen?.kind === 'file') throw new PackageError(`entry "${printable(entry.path)}": "${printable(parent)}" is a file in the zip and also a directory`);
      if (!seen) this.kinds.set(parent, { kind: 'directory', explicit: false });
    }
    const seen = this.kinds.get(entry.path);
    if (seen && (seen.explicit || seen.kind !== entry.kind)) {
      const why = seen.kind === entry.kind ? 'is in the zip twice (a duplicate entry)' : 'is in the zip as a file and also as a directory (a duplicate entry)';
      throw new PackageError(`entry "${printable(entry.path)}" ${why}`);
    }
    this.kinds.set(entry.path, { kind: entry.kind, explicit: true });
  }
}

/** A name as it can be shown in a message: control characters escaped, at most 200 characters. */
function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  const escaped = name.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return escaped.length > 200 ? `${escaped.slice(0, 200)}...` : escaped;
}

// The host's deployment packages, stored by the SHA-256 of their zip under one directory:
//   DIR/<sha>/package.zip   the zip as uploaded (GET .../package returns it)
//   DIR/<sha>/image.ext4    its files as the ext4 image VMs mount read-only at /var/task
//   DIR/<sha>/info.json     its PackageInfo; entries.json: where each file is in the zip (files(), readFile())
// A package is built in DIR/.staging-* and renamed into place whole, and removed by renaming it to DIR/.trash-*
// first: DIR/<sha> exists only complete, across crashes. Puts of one sha share one build; a remove waits for it.
import { randomBytes, createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Limiter } from '../limiter.js';
import { entryBytes } from './entry-data.js';
import { extractZip } from './extract.js';
import { buildImage } from './image.js';
import { PackageError, type PackageFile, type PackageInfo, type PackageRepository } from './types.js';
import { inspectZip, normalisePath, type ZipEntry } from './zip.js';

const shaPattern = /^[0-9a-f]{64}$/;
/** Scratch directories are named by the process that made them, so that a sweep knows the dead ones. */
const scratchPrefix = 'fnvm-package-';
/** Builds at once: each holds an unpacked package (up to 250 MiB) in scratch space and keeps a core busy. */
const parallelBuilds = 2;

export interface PackageStoreOptions {
  /** The mkfs.ext4 to run (tests give one that fails). */
  mkfs?: string;
  /** Where packages are unpacked before mkfs: tmpfs if the host has it, else beside the store. */
  scratchDir?: string;
}

/** One entry as entries.json keeps it: enough to read a file back from the zip without parsing it again. */
type IndexEntry = Pick<ZipEntry, 'path' | 'kind' | 'size' | 'crc32' | 'method' | 'dataStart' | 'compressedSize'>;

export class PackageStore implements PackageRepository {
  private readonly puts = new Map<string, Promise<PackageInfo>>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly builds = new Limiter(parallelBuilds);
  private readonly mkfs: string;
  private readonly scratchDir: string;

  constructor(private readonly dir: string, options: PackageStoreOptions = {}) {
    this.mkfs = options.mkfs ?? 'mkfs.ext4';
    this.scratchDir = options.scratchDir ?? (isDirectory('/dev/shm') ? '/dev/shm' : tmpdir());
  }

  /** Validates the zip and stores it with its image, once per content; PackageError (nothing written) if refused. */
  put(zip: Buffer): Promise<PackageInfo> {
    const sha256 = createHash('sha256').update(zip).digest('hex');
    const running = this.puts.get(sha256);
    if (running) return running;
    const put: Promise<PackageInfo> = this.serially(sha256, () => this.store(zip, sha256)).finally(() => {
      if (this.puts.get(sha256) === put) this.puts.delete(sha256);
    });
    this.puts.set(sha256, put);
    return put;
  }

  has(sha256: string): boolean {
    return shaPattern.test(sha256) && existsSync(join(this.dir, sha256, 'info.json'));
  }

  /** A package is on this host's disk or nowhere. */
  ensure(_sha256: string): Promise<void> {
    return Promise.resolve();
  }

  zipPath(sha256: string): string {
    return join(this.packageDir(sha256), 'package.zip');
  }

  imagePath(sha256: string): string {
    return join(this.packageDir(sha256), 'image.ext4');
  }

  /** The package's files (not its directories), in the zip's order. */
  async files(sha256: string): Promise<PackageFile[]> {
    return (await this.index(sha256)).filter((e) => e.kind === 'file').map((e) => ({ path: e.path, size: e.size }));
  }

  /** One file's content; PackageError if the package has no such file (or it is a directory). */
  async readFile(sha256: string, path: string): Promise<Buffer> {
    const index = await this.index(sha256);
    const wanted = normalisePath(path);
    const entry = wanted === null ? undefined : index.find((e) => e.path === wanted);
    if (wanted !== null && (entry?.kind === 'directory' || (!entry && index.some((e) => e.path.startsWith(`${wanted}/`))))) {
      throw new PackageError(`"${wanted}" is a directory in the package, not a file`);
    }
    if (!entry) throw new PackageError(`the package has no file "${path}"`);
    const zip = await open(this.zipPath(sha256), 'r');
    try {
      const raw = Buffer.alloc(entry.compressedSize);
      const { bytesRead } = await zip.read(raw, 0, raw.length, entry.dataStart);
      if (bytesRead !== raw.length) throw new Error(`package ${sha256}: its zip is shorter than its index says`);
      return await entryBytes(raw, { ...entry, dataStart: 0, executable: false, mtime: new Date(0) });
    } finally {
      await zip.close();
    }
  }

  /** Removes the package (the caller knows no function uses it); waits for a put of it that is under way. */
  async remove(sha256: string): Promise<void> {
    const dir = this.packageDir(sha256);
    // A put from now on stores the package again, after this remove, rather than joining one under way before it.
    this.puts.delete(sha256);
    return this.serially(sha256, async () => {
      const trash = join(this.dir, `.trash-${sha256}-${randomBytes(4).toString('hex')}`);
      try {
        await rename(dir, trash);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return;
        throw error;
      }
      await rm(trash, { recursive: true, force: true });
    });
  }

  /** Removes every package not in `inUse`, and what a crash left half-built or half-removed (also in scratch space). */
  async sweep(inUse: Set<string>): Promise<void> {
    await this.sweepScratch();
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    for (const name of names) {
      if (shaPattern.test(name) && !inUse.has(name)) await this.remove(name);
      else if (name.startsWith('.staging-') || name.startsWith('.trash-')) await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** Scratch directories of processes that are gone (the scratch space is shared: others' may be in use). */
  private async sweepScratch(): Promise<void> {
    const names = await readdir(this.scratchDir).catch(() => []);
    for (const name of names) {
      const pid = name.startsWith(scratchPrefix) ? Number(/^(\d+)-/.exec(name.slice(scratchPrefix.length))?.[1]) : NaN;
      if (Number.isSafeInteger(pid) && pid !== process.pid && !isAlive(pid)) await rm(join(this.scratchDir, name), { recursive: true, force: true });
    }
  }

  private async store(zip: Buffer, sha256: string): Promise<PackageInfo> {
    const stored = await this.info(sha256);
    if (stored) return stored;
    const inspection = await inspectZip(zip, sha256);
    return this.builds.run(async () => {
      const scratch = await mkdtemp(join(this.scratchDir, `${scratchPrefix}${process.pid}-`));
      let staging: string | null = null;
      try {
        // Unpacked (and its data checked) before anything is written to the store: a refusal leaves it as it was.
        const root = join(scratch, 'root');
        await mkdir(root);
        await extractZip(zip, inspection, root);
        await mkdir(this.dir, { recursive: true });
        staging = join(this.dir, `.staging-${sha256}-${randomBytes(4).toString('hex')}`);
        await mkdir(staging);
        await writeFile(join(staging, 'package.zip'), zip);
        await buildImage(root, inspection, join(staging, 'image.ext4'), this.mkfs);
        const index: IndexEntry[] = inspection.entries.map(({ path, kind, size, crc32, method, dataStart, compressedSize }) => ({ path, kind, size, crc32, method, dataStart, compressedSize }));
        await writeFile(join(staging, 'entries.json'), JSON.stringify(index));
        await writeFile(join(staging, 'info.json'), JSON.stringify(inspection.info));
        await rename(staging, join(this.dir, sha256));
        staging = null;
        return inspection.info;
      } finally {
        await rm(scratch, { recursive: true, force: true });
        if (staging) await rm(staging, { recursive: true, force: true });
      }
    });
  }

  private async info(sha256: string): Promise<PackageInfo | null> {
    let text: string;
    try {
      text = await readFile(join(this.packageDir(sha256), 'info.json'), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return null;
      throw error;
    }
    const info = parseInfo(JSON.parse(text));
    if (!info || info.sha256 !== sha256) throw new Error(`package ${sha256}: info.json is not a package's info`);
    return info;
  }

  private async index(sha256: string): Promise<IndexEntry[]> {
    let text: string;
    try {
      text = await readFile(join(this.packageDir(sha256), 'entries.json'), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw new PackageError(`package ${sha256} is not stored on this host`);
      throw error;
    }
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) throw new Error(`package ${sha256}: entries.json is not a list`);
    return parsed.map((item: unknown) => {
      const entry = parseIndexEntry(item);
      if (!entry) throw new Error(`package ${sha256}: entries.json has a malformed entry`);
      return entry;
    });
  }

  private packageDir(sha256: string): string {
    if (!shaPattern.test(sha256)) throw new Error(`not a package's SHA-256: ${sha256}`);
    return join(this.dir, sha256);
  }

  /** Runs the tasks for one package one after another (a remove never runs under a put of the same package). */
  private serially<T>(sha256: string, task: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(sha256) ?? Promise.resolve()).then(task, task);
    const settled = result.then(() => undefined, () => undefined);
    this.queues.set(sha256, settled);
    void settled.then(() => {
      if (this.queues.get(sha256) === settled) this.queues.delete(sha256);
    });
    return result;
  }
}

function isAlive(pid: number): boolean {
  try {
    // Signal 0 sends nothing: it only asks whether the process exists.
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function errorCode(error: unknown): unknown {
  return typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function parseInfo(value: unknown): PackageInfo | null {
  if (!isRecord(value)) return null;
  const { sha256, size, unpacked_size, files } = value;
  if (typeof sha256 !== 'string' || !isCount(size) || !isCount(unpacked_size) || !isCount(files)) return null;
  return { sha256, size, unpacked_size, files };
}

function parseIndexEntry(value: unknown): IndexEntry | null {
  if (!isRecord(value)) return null;
  const { path, kind, size, crc32, method, dataStart, compressedSize } = value;
  if (typeof path !== 'string' || (kind !== 'file' && kind !== 'directory') || (method !== 0 && method !== 8)) return null;
  if (!isCount(size) || !isCount(crc32) || !isCount(dataStart) || !isCount(compressedSize)) return null;
  return { path, kind, size, crc32, method, dataStart, compressedSize };
}

// A directory as a deployment package: a zip made with yazl, without what .fnvmignore (gitignore syntax) leaves
// out. Deterministic: files in byte order of their paths, one fixed timestamp, modes from the exec bit only;
// the same tree gives the same bytes, so the same sha256 (the server stores packages by content).
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ignore, { type Ignore } from 'ignore';
import yazl from 'yazl';
import { CliError } from './errors.js';

export const ignoreFile = '.fnvmignore';

/** 1980-01-01 00:00 in local time: DOS timestamps are local, so every time zone writes the same bytes. */
const fixedMtime = new Date(1980, 0, 1, 0, 0, 0);

export interface PackageZip {
  zip: Buffer;
  sha256: string;
  /** Paths in the zip, in order. */
  files: string[];
}

/** The files of `dir` to package: relative posix paths, sorted, without .git, .fnvmignore and what it ignores. */
export function packageFiles(dir: string): string[] {
  const rules = readRules(dir);
  const files: string[] = [];
  const seenDirs = new Set<string>();
  const walk = (absolute: string, relative: string) => {
    const real = realpathSync(absolute);
    if (seenDirs.has(real)) throw new CliError(`${join(dir, relative)}: a symbolic link loops back to a directory being packaged`);
    seenDirs.add(real);
    for (const name of readdirSync(absolute).sort(byteOrder)) {
      const path = relative === '' ? name : `${relative}/${name}`;
      if (name === '.git' || path === ignoreFile) continue;
      const full = join(absolute, name);
      const stats = statOf(full, path);
      if (stats === 'dir') {
        if (!rules.ignores(`${path}/`)) walk(full, path);
      } else if (stats === 'file' && !rules.ignores(path)) {
        files.push(path);
      }
    }
    seenDirs.delete(real);
  };
  walk(dir, '');
  return files.sort(byteOrder);
}

/** Zips `packageFiles(dir)`. */
export async function zipDirectory(dir: string): Promise<PackageZip> {
  const files = packageFiles(dir);
  if (files.length === 0) throw new CliError(`${dir}: nothing to deploy (no files, or ${ignoreFile} leaves them all out)`);
  const zip = new yazl.ZipFile();
  for (const path of files) {
    const full = join(dir, ...path.split('/'));
    const executable = (statSync(full).mode & 0o100) !== 0;
    zip.addFile(full, path, { mtime: fixedMtime, mode: executable ? 0o100755 : 0o100644, forceDosTimestamp: true, compress: true });
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(Buffer.from(chunk));
  const bytes = Buffer.concat(chunks);
  return { zip: bytes, sha256: createHash('sha256').update(bytes).digest('hex'), files };
}

function readRules(dir: string): Ignore {
  const rules = ignore();
  try {
    rules.add(readFileSync(join(dir, ignoreFile), 'utf8'));
  } catch (error) {
    if (!(error instanceof Error && 'code' in error && error.code === 'ENOENT')) throw error;
  }
  return rules;
}

/** What a path is, following symbolic links (a linked file is packaged as its content); others are skipped. */
function statOf(full: string, path: string): 'dir' | 'file' | 'other' {
  try {
    const stats = statSync(full);
    return stats.isDirectory() ? 'dir' : stats.isFile() ? 'file' : 'other';
  } catch (error) {
    if (lstatSync(full).isSymbolicLink()) throw new CliError(`${path}: a symbolic link to nothing`);
    throw error;
  }
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

// Zips for tests: built with yazl from a map of files, or from packages in this repository's node_modules.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import yazl from 'yazl';

export type Files = Record<string, string | Buffer>;

/** A zip of `files` (path -> content), in the order given; `modes` sets unix modes (e.g. a symlink's). */
export async function zipOf(files: Files, modes: Record<string, number> = {}): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const mtime = new Date('2026-01-01T00:00:00Z');
  for (const [path, content] of Object.entries(files)) {
    zip.addBuffer(Buffer.from(content), path, { mtime, mode: modes[path] ?? 0o100644 });
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * The files of npm packages `names` and of everything they depend on, as installed in node_modules (a real
 * dependency tree, walked through each package.json's dependencies), under `node_modules/` in the result.
 */
export function nodeModulesTree(root: string, names: string[]): Files {
  const files: Files = {};
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const dir = join(root, 'node_modules', name);
    if (!existsSync(dir)) return; // installed nested, inside its dependent's own node_modules (copied with it)
    const manifest: unknown = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    for (const file of walk(dir)) files[`node_modules/${name}/${relative(dir, file)}`] = readFileSync(file);
    const deps = typeof manifest === 'object' && manifest !== null && 'dependencies' in manifest ? manifest.dependencies : {};
    for (const dep of Object.keys(typeof deps === 'object' && deps !== null ? deps : {})) visit(dep);
  };
  names.forEach(visit);
  return files;
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    const stat = statSync(path);
    if (stat.isDirectory()) yield* walk(path);
    else if (stat.isFile()) yield path;
  }
}

/**
 * Replaces every occurrence of `from` with `to` (same length) in the zip's bytes. Entry names live in the local
 * headers and the central directory, outside the CRC: so a zip no library would write is made from one it would.
 */
export function patchBytes(zip: Buffer, from: string, to: string): Buffer {
  if (from.length !== to.length) throw new Error('patchBytes needs strings of one length');
  const out = Buffer.from(zip);
  const needle = Buffer.from(from);
  let count = 0;
  for (let at = out.indexOf(needle); at !== -1; at = out.indexOf(needle, at + 1)) {
    out.write(to, at);
    count++;
  }
  if (count === 0) throw new Error(`"${from}" is not in the zip`);
  return out;
}

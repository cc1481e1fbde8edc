// put() of the package store, create to ready on the host side (validate, store the zip, unpack, mkfs, extend):
// a one-file zip, a ~5 MB zip of a real npm dependency tree, and a ~50 MB one (real dependency trees with their
// native binaries, topped up with incompressible data to the size). Each sample builds into a fresh store.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PackageStore } from '../src/packages/store.js';
import { packageLimits } from '../src/packages/types.js';
import { repoRoot } from '../src/paths.js';
import { nodeModulesTree, zipOf, type Files } from '../test/support/zips.js';
import { ms, percentile, row, timeEach } from './stats.js';

const samples = Number(process.env.BENCH_SAMPLES ?? 10);
const MB = 1e6;

async function benchPut(label: string, zip: Buffer, files: number, count: number): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'fnvm-pkgbench-'));
  try {
    const times = await timeEach(count, async (i) => {
      const store = new PackageStore(join(root, String(i)));
      await store.put(zip);
    });
    row(`${label} (${(zip.length / MB).toFixed(1)} MB, ${files} files)`, `p50 ${ms(percentile(times, 50))}  p95 ${ms(percentile(times, 95))}  (n=${count})`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Real dependency trees from this repository's node_modules, added until the zip would pass `targetBytes`. */
async function treeOf(names: string[], targetBytes: number): Promise<Files> {
  let files: Files = { 'index.js': 'exports.handler = async () => "ok";\n' };
  for (const name of names) {
    const more = { ...files, ...nodeModulesTree(repoRoot, [name]) };
    if (Object.keys(more).length > packageLimits.entries - 10) continue;
    if ((await zipOf(more)).length > targetBytes) continue;
    files = more;
  }
  return files;
}

const single = { 'index.js': 'exports.handler = async (event) => ({ echo: event });\n' };
await benchPut('one file', await zipOf(single), 1, samples * 2);

const fiveMb = await treeOf(['fastify', 'kysely', 'react-dom', 'yazl', 'yauzl'], 5.2 * MB);
await benchPut('npm dependency tree', await zipOf(fiveMb), Object.keys(fiveMb).length, samples);

const fiftyMb = await treeOf([
  'typescript', '@rolldown/binding-linux-x64-gnu', 'better-sqlite3', 'playwright-core', 'eslint', 'fastify', 'typescript-eslint', 'react-dom', 'kysely', 'vite',
  '@babel/parser', 'codemirror', 'pino',
], 48 * MB);
const partial = await zipOf(fiftyMb);
// Assets that do not compress (images, wasm) make up the rest of the 50 MB.
fiftyMb['assets/blob.bin'] = randomBytes(Math.max(0, 50 * MB - partial.length - 4096));
const big = await zipOf(fiftyMb);
await benchPut('large package', big, Object.keys(fiftyMb).length, Math.max(3, Math.ceil(samples / 2)));

// Deployment packages end to end: create -> ready of a single-file function (warm pool), of a 5 MB zip holding
// a real npm dependency tree (fastify, kysely, react, react-dom from this repository's node_modules) whose
// handler requires it when invoked (the platform's path: upload, validation, image, attach, mount, load) and
// one that requires it all at the top level (plus the tree's own initialisation, init_ms), and of a 50 MiB zip
// (the same tree plus incompressible data); then warm invoke latency of a packaged function against a
// single-file one, measured in the same run (ratio). Every run's zip is new (a file with the run's number), so
// no run reuses the image of another.
// BENCH_RUNS (default 7) sets the runs per kind.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type Server } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { nodeModulesTree, zipOf, type Files } from '../test/support/zips.js';
import { httpClient, ms, percentile, row } from './stats.js';

const runs = Number(process.env.BENCH_RUNS ?? 7);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const page = `const Fastify = require('fastify');
const React = require('react');
const { renderToString } = require('react-dom/server');
const { Kysely } = require('kysely');
const app = Fastify();
app.get('/', async () => renderToString(React.createElement('p', null, 'hello')));
exports.handler = async (event) => (event.page ? (await app.inject({ url: '/' })).body : { kysely: typeof Kysely });
`;
/** The same handler, its dependencies required at the first invocation that needs them. */
const lazyPage = `let app;
exports.handler = async (event) => {
  if (!event.page) return { ok: true };
  if (!app) {
    const React = require('react');
    const { renderToString } = require('react-dom/server');
    app = require('fastify')();
    app.get('/', async () => renderToString(React.createElement('p', null, 'hello')));
  }
  return (await app.inject({ url: '/' })).body;
};
`;
const single = `exports.handler = async (event) => event;`;

async function api(base: string, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

const initTimes: number[] = [];

/** POST, then GET every 2 ms until ready: the figure includes the upload, validation, image build and load. */
async function createToReady(base: string, name: string, body: Record<string, unknown>): Promise<number> {
  const started = performance.now();
  const created = await api(base, 'POST', '/v1/functions', { name, runtime: 'node', ...body });
  if (!created.id) throw new Error(`create failed: ${JSON.stringify(created)}`);
  for (;;) {
    const { item } = await api(base, 'GET', `/v1/functions/${created.id}`);
    if (item.state === 'ready') {
      initTimes.push(item.init_ms);
      return performance.now() - started;
    }
    if (item.state === 'error') throw new Error(`${name}: ${item.error}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function series(s: Server, kind: string, body: (i: number) => Promise<Record<string, unknown>>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const payload = await body(i);
    await s.pool.settled(); // each run starts with a warm VM waiting, as a deploy on a quiet host does
    const name = `${kind}-${i}`;
    samples.push(await createToReady(s.url, name, payload));
    await api(s.url, 'DELETE', `/v1/functions/${name}`);
  }
  return samples;
}

async function invokeLatency(base: string, name: string): Promise<number[]> {
  const { samples }: { samples: number[] } = await httpClient(`${base}/v1/functions/${name}/invoke`, JSON.stringify({ event: { n: 1 } }), 'latency', 1500);
  return samples;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-bench-deploy-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'warn' };
  const s = await startServer(config, (m) => process.stderr.write(`[fnvm] ${m}\n`));
  try {
    const tree: Files = { 'index.js': lazyPage, ...nodeModulesTree(root, ['fastify', 'kysely', 'react', 'react-dom']) };
    const packageOf = async (i: number, padding: Buffer | null, index = lazyPage) => {
      const zip = await zipOf({ ...tree, 'index.js': index, 'run.txt': `${i}`, ...(padding && { 'data.bin': padding }) });
      return { handler: 'index.handler', package: zip.toString('base64') };
    };
    const inits = () => ms(percentile(initTimes.splice(0), 50));
    const fiveMb = await zipOf(tree);
    const files = Object.keys(tree).length;
    process.stdout.write(`packages: ${files} files; ${(fiveMb.length / 1e6).toFixed(1)} MB zipped; ${runs} runs each\n`);

    const singleFile = await series(s, 'single', async () => ({ code: single }));
    row('create -> ready, single file p50 / p95', `${ms(percentile(singleFile, 50))} / ${ms(percentile(singleFile, 95))}`);
    initTimes.length = 0;
    const mb = `${(fiveMb.length / 1e6).toFixed(1)} MB`;
    const small = await series(s, 'tree5', (i) => packageOf(i, null));
    row(`create -> ready, ${mb} npm tree p50 / p95`, `${ms(percentile(small, 50))} / ${ms(percentile(small, 95))} (init_ms p50 ${inits()})`);
    const heavy = await series(s, 'tree5-init', (i) => packageOf(i, null, page));
    row(`... the tree required at the top level`, `${ms(percentile(heavy, 50))} / ${ms(percentile(heavy, 95))} (init_ms p50 ${inits()})`);
    const padding = randomBytes(Math.max(0, 50 * 2 ** 20 - fiveMb.length - 64 * 1024));
    const large = await series(s, 'tree50', (i) => packageOf(i, padding));
    row('create -> ready, 50 MiB zip p50 / p95', `${ms(percentile(large, 50))} / ${ms(percentile(large, 95))} (init_ms p50 ${inits()})`);

    await createToReady(s.url, 'invoke-single', { code: single });
    await createToReady(s.url, 'invoke-packaged', await packageOf(-1, null));
    await s.pool.settled();
    const plain = await invokeLatency(s.url, 'invoke-single');
    const packaged = await invokeLatency(s.url, 'invoke-packaged');
    row('warm invoke, single file p50 / p99', `${ms(percentile(plain, 50))} / ${ms(percentile(plain, 99))}`);
    row('warm invoke, packaged p50 / p99', `${ms(percentile(packaged, 50))} / ${ms(percentile(packaged, 99))}`);
    row('packaged / single file (p50)', (percentile(packaged, 50) / percentile(plain, 50)).toFixed(2));
  } finally {
    await s.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();

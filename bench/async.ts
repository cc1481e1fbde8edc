// Asynchronous invocation figures: events accepted per second (each committed before its 202) and drained per
// second (run and settled) on one function, and the synchronous invoke latency while a drain runs against the
// same function without one, measured in the same run (ratio). BENCH_EVENTS sets the events per phase (3000).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'node:http';
import { startServer, type Server } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { run } from '../src/exec.js';
import { identityHandler } from '../src/guest/warmup.js';
import { ms, percentile, row } from './stats.js';

const events = Number(process.env.BENCH_EVENTS ?? 3000);
const agent = new Agent({ keepAlive: true, maxSockets: 32 });

function post(base: string, path: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sequential sync invokes from a client process (bench/lambda-client.js, /v1 mode): latency samples. */
async function syncSamples(base: string, count: number): Promise<number[]> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'lambda-client.js');
  const parsed: unknown = JSON.parse((await run(process.execPath, [script, base, 'bench', 'v1', String(count)])).toString());
  if (typeof parsed !== 'object' || parsed === null || !('samples' in parsed) || !Array.isArray(parsed.samples)) throw new Error('bad client output');
  return parsed.samples.filter((s): s is number => typeof s === 'number');
}

/** Accepts `events` events with 32 clients; resolves to the seconds it took. */
async function enqueueAll(base: string): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < events) {
      const n = next++;
      const status = await post(base, '/v1/functions/bench/invoke', JSON.stringify({ event: { n } }), { prefer: 'respond-async' });
      if (status !== 202) throw new Error(`event ${n}: HTTP ${status}`);
    }
  }));
  return (performance.now() - started) / 1000;
}

async function drained(server: Server): Promise<void> {
  while (server.service.queueFigures('bench').queued > 0) await new Promise((resolve) => setTimeout(resolve, 5));
}

const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-bench-async-'));
const server = await startServer({ ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'warn', retention: 100 }, (m) => process.stderr.write(`[fnvm] ${m}\n`));
try {
  await server.service.create({ name: 'bench', runtime: 'node', code: identityHandler.node });
  while (server.service.get('bench').state !== 'ready') await new Promise((resolve) => setTimeout(resolve, 20));
  const quiet = await syncSamples(server.url, 500);

  const start = performance.now();
  const acceptSeconds = await enqueueAll(server.url);
  await drained(server);
  const drainSeconds = (performance.now() - start) / 1000;
  row('events per phase', String(events));
  row('accepted (committed, 202) per second, 32 clients', (events / acceptSeconds).toFixed(0));
  row('drained (run and settled) per second', `${(events / drainSeconds).toFixed(0)} (${drainSeconds.toFixed(2)} s from the first 202)`);

  const loading = enqueueAll(server.url);
  const busy = await syncSamples(server.url, 500);
  await loading;
  await drained(server);
  row('sync invoke p50 / p99, quiet', `${ms(percentile(quiet, 50))} / ${ms(percentile(quiet, 99))}`);
  row('sync invoke p50 / p99, while async events drain', `${ms(percentile(busy, 50))} / ${ms(percentile(busy, 99))}`);
  row('  ratio p50', (percentile(busy, 50) / percentile(quiet, 50)).toFixed(2));
} finally {
  agent.destroy();
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}

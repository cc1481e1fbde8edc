// Functions API figures: create -> ready (warm pool and empty pool), warm invoke latency and throughput
// through HTTP, against the bare guest-channel round trip measured in the same run (overhead ratio).
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type Server } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { run } from '../src/exec.js';
import { identityHandler } from '../src/guest/warmup.js';
import { ms, percentile, row, timeEach } from './stats.js';

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function call(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(`${base}${path}`, {
      method, agent, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Runs bench/http-client.js in its own process: a client sharing the server's event loop would inflate it. */
async function client(url: string, body: string, mode: string, amount: number, concurrency = 32): Promise<unknown> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'http-client.js');
  const stdout = await run(process.execPath, [script, url, body, mode, String(amount), String(concurrency)]);
  return JSON.parse(stdout.toString());
}

async function server(poolSize: number): Promise<{ server: Server; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-bench-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, poolSize, logLevel: 'warn' };
  return { server: await startServer(config, (m) => process.stderr.write(`[fnvm] ${m}\n`)), dataDir };
}

/** Create -> ready, polling GET every 2 ms (the figure includes up to one poll interval). */
async function createToReady(s: Server, runs: number, refill: boolean): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (refill) await s.pool.settled();
    const start = performance.now();
    const { json } = await call(s.url, 'POST', '/v1/functions', { name: `f${i}-${Date.now()}`, runtime: 'node', code: identityHandler.node });
    for (;;) {
      const { json: got } = await call(s.url, 'GET', `/v1/functions/${json.id}`);
      if (got.item.state === 'ready') break;
      if (got.item.state === 'error') throw new Error(got.item.error);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    samples.push(performance.now() - start);
    await call(s.url, 'DELETE', `/v1/functions/${json.id}`);
  }
  return samples;
}

async function main(): Promise<void> {
  const warm = await server(1);
  const cold = await server(0);
  try {
    await warm.server.pool.settled();
    const warmReady = await createToReady(warm.server, 10, true);
    const emptyReady = await createToReady(cold.server, 5, false);
    row('create -> ready, warm pool p50 / p95', `${ms(percentile(warmReady, 50))} / ${ms(percentile(warmReady, 95))}`);
    row('create -> ready, empty pool p50 / p95', `${ms(percentile(emptyReady, 50))} / ${ms(percentile(emptyReady, 95))}`);

    const base = warm.server.url;
    const { json } = await call(base, 'POST', '/v1/functions', { name: 'bench-echo', runtime: 'node', code: identityHandler.node });
    while ((await call(base, 'GET', `/v1/functions/${json.id}`)).json.item.state !== 'ready');
    const invokeUrl = `${base}/v1/functions/${json.id}/invoke`;
    const body = JSON.stringify({ event: { n: 1 } });
    const { samples: http } = (await client(invokeUrl, body, 'latency', 2000)) as { samples: number[] };
    const seconds = 5;
    const { ok: done, failed } = (await client(invokeUrl, body, 'throughput', seconds, 32)) as { ok: number; failed: number };

    const { vm } = await warm.server.pool.take({ runtime: 'node', vcpu: 1, memoryMb: 256, network: 'outbound' });
    await vm.channel.request('load', { code: identityHandler.node, handler: 'handler', env: {}, version: 1 });
    const trip = () => vm.channel.request('invoke', { request_id: 'b', event: { n: 1 }, timeout_ms: 5000 });
    await timeEach(500, trip);
    const channel = await timeEach(2000, trip);
    await vm.stop();

    row('warm invoke via HTTP p50 / p99', `${ms(percentile(http, 50))} / ${ms(percentile(http, 99))}`);
    row('guest channel round trip p50 / p99', `${ms(percentile(channel, 50))} / ${ms(percentile(channel, 99))}`);
    row('HTTP / channel p50 overhead ratio', `${(percentile(http, 50) / percentile(channel, 50)).toFixed(2)}x`);
    row('throughput, 32 clients, one function', `${(done / seconds).toFixed(0)} invocations/s (${failed} failed)`);
  } finally {
    for (const { server: s, dataDir } of [warm, cold]) {
      await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    agent.destroy();
  }
}

await main();

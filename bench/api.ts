// Functions API figures: create -> ready (warm pool and empty pool), warm invoke latency and throughput
// through HTTP, against the bare guest-channel round trip measured in the same run (overhead ratio), with a
// breakdown of where each invocation's time goes and the latency while the warm pool refills.
// BENCH_INVOKE_ONLY=1 skips the create -> ready figures (for repeated runs).
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Agent, request, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startServer, type Server } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { invokeTimings, type InvokeTimings } from '../src/functions/service.js';
import { identityHandler } from '../src/guest/warmup.js';
import { httpClient, ms, percentile, row, timeEach } from './stats.js';

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

async function server(poolSize: number): Promise<{ server: Server; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-bench-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, poolSize, logLevel: 'warn' };
  return { server: await startServer(config, (m) => process.stderr.write(`[fnvm] ${m}\n`)), dataDir };
}

async function createReady(base: string, name: string, pollMs: number): Promise<string> {
  const { json } = await call(base, 'POST', '/v1/functions', { name, runtime: 'node', code: identityHandler.node });
  for (;;) {
    const { json: got } = await call(base, 'GET', `/v1/functions/${json.id}`);
    if (got.item.state === 'ready') return json.id;
    if (got.item.state === 'error') throw new Error(got.item.error);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Create -> ready, polling GET every 2 ms (the figure includes up to one poll interval). */
async function createToReady(s: Server, runs: number, refill: boolean): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    if (refill) await s.pool.settled();
    const start = performance.now();
    const id = await createReady(s.url, `f${i}-${Date.now()}`, 2);
    samples.push(performance.now() - start);
    await call(s.url, 'DELETE', `/v1/functions/${id}`);
  }
  return samples;
}

/**
 * Per invocation, in the server's process: request received -> response finished (Node's HTTP diagnostics
 * channels), and the service's guest and store phases. Sequential invokes line up by index.
 */
class Probe {
  server: number[] = [];
  guest: number[] = [];
  store: number[] = [];
  private readonly started = new WeakMap<IncomingMessage, number>();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 1 });
  private readonly onStart = (message: unknown) => {
    const req = requestOf(message);
    if (req?.method === 'POST' && req.url?.endsWith('/invoke')) this.started.set(req, performance.now());
  };
  private readonly onFinish = (message: unknown) => {
    const req = requestOf(message);
    const start = req && this.started.get(req);
    if (start !== undefined) this.server.push(performance.now() - start);
  };
  private readonly onTimings = (message: unknown) => {
    const { guestMs, storeMs } = message as InvokeTimings;
    this.guest.push(guestMs);
    this.store.push(storeMs);
  };

  start(): void {
    this.server = [];
    this.guest = [];
    this.store = [];
    subscribe('http.server.request.start', this.onStart);
    subscribe('http.server.response.finish', this.onFinish);
    invokeTimings.subscribe(this.onTimings);
    this.loopDelay.reset();
    this.loopDelay.enable();
  }

  /** Stops, keeping the last `count` invocations (the client's warm-up ones come first). */
  stop(count: number): { eventLoopP99: number } {
    unsubscribe('http.server.request.start', this.onStart);
    unsubscribe('http.server.response.finish', this.onFinish);
    invokeTimings.unsubscribe(this.onTimings);
    this.loopDelay.disable();
    this.server = this.server.slice(-count);
    this.guest = this.guest.slice(-count);
    this.store = this.store.slice(-count);
    return { eventLoopP99: this.loopDelay.percentile(99) / 1e6 };
  }
}

function requestOf(message: unknown): IncomingMessage | undefined {
  if (typeof message !== 'object' || message === null || !('request' in message)) return undefined;
  return message.request as IncomingMessage;
}

const p50p99 = (samples: number[]) => `${ms(percentile(samples, 50))} / ${ms(percentile(samples, 99))}`;
const minus = (a: number[], ...bs: number[][]) => a.map((x, i) => bs.reduce((rest, b) => rest - (b[i] ?? 0), x));

function breakdown(label: string, http: number[], probe: Probe, eventLoopP99: number): void {
  row(`${label} p50 / p99`, p50p99(http));
  if (probe.server.length !== http.length || probe.guest.length !== http.length) {
    row('  (breakdown unavailable)', `${probe.server.length} server / ${probe.guest.length} guest samples`);
    return;
  }
  row('  outside the server (client, kernel, parse)', p50p99(minus(http, probe.server)));
  row('  in the server', p50p99(probe.server));
  row('    guest (instance.invoke)', p50p99(probe.guest));
  row('    store (recordInvocation)', p50p99(probe.store));
  row('    rest (Fastify, body, JSON, hops)', p50p99(minus(probe.server, probe.guest, probe.store)));
  row('  server event loop delay p99', ms(eventLoopP99));
}

/** Creates, readies and deletes functions until `stop()`: each create takes a warm VM, so the pool keeps restoring. */
function churn(base: string): { stop: () => Promise<number> } {
  let running = true;
  let cycles = 0;
  const loop = (async () => {
    while (running) {
      const id = await createReady(base, `churn-${cycles}-${Date.now()}`, 20);
      await call(base, 'DELETE', `/v1/functions/${id}`);
      cycles++;
    }
  })();
  return { stop: async () => { running = false; await loop; return cycles; } };
}

async function main(): Promise<void> {
  const invokeOnly = process.env.BENCH_INVOKE_ONLY === '1';
  const warm = await server(1);
  const cold = invokeOnly ? undefined : await server(0);
  try {
    await warm.server.pool.settled();
    if (cold) {
      const warmReady = await createToReady(warm.server, 10, true);
      const emptyReady = await createToReady(cold.server, 5, false);
      row('create -> ready, warm pool p50 / p95', `${ms(percentile(warmReady, 50))} / ${ms(percentile(warmReady, 95))}`);
      row('create -> ready, empty pool p50 / p95', `${ms(percentile(emptyReady, 50))} / ${ms(percentile(emptyReady, 95))}`);
    }

    const base = warm.server.url;
    const id = await createReady(base, 'bench-echo', 2);
    await warm.server.pool.settled();
    const invokeUrl = `${base}/v1/functions/${id}/invoke`;
    const body = JSON.stringify({ event: { n: 1 } });
    const count = 2000;
    const probe = new Probe();

    probe.start();
    const { samples: http } = await httpClient(invokeUrl, body, 'latency', count);
    const quiet = probe.stop(count);
    breakdown('warm invoke via HTTP', http, probe, quiet.eventLoopP99);

    const seconds = 5;
    const { ok: done, failed } = await httpClient(invokeUrl, body, 'throughput', seconds, 32);

    const background = churn(base);
    probe.start();
    const { samples: refilling } = await httpClient(invokeUrl, body, 'latency', count);
    const busy = probe.stop(count);
    const cycles = await background.stop();
    breakdown(`... while the pool refills (${cycles} VMs taken)`, refilling, probe, busy.eventLoopP99);

    await warm.server.pool.settled();
    const { vm } = await warm.server.pool.take({ runtime: 'node', vcpu: 1, memoryMb: 256, network: 'outbound' });
    await vm.channel.request('load', { code: identityHandler.node, handler: 'handler', env: {}, version: 1 });
    const trip = () => vm.channel.request('invoke', { request_id: 'b', event: { n: 1 }, timeout_ms: 5000 });
    await timeEach(500, trip);
    const channel = await timeEach(count, trip);
    await vm.stop();

    row('guest channel round trip p50 / p99', p50p99(channel));
    row('HTTP / channel p50 overhead ratio', `${(percentile(http, 50) / percentile(channel, 50)).toFixed(2)}x`);
    row('throughput, 32 clients, one function', `${(done / seconds).toFixed(0)} invocations/s (${failed} failed)`);
  } finally {
    for (const { server: s, dataDir } of [warm, cold].filter((x) => x !== undefined)) {
      await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    agent.destroy();
  }
}

await main();

// The fleet's extra hop: a small JSON POST straight to the host that owns the function vs through another host
// that forwards it (src/fleet/forward.ts), in the same run. Owner and front are processes of their own, the
// client too (bench/http-client.js, keep-alive), so no two of them share an event loop.
// Usage: node dist/bench/forward.js [count per path, default 5000] [owner's answer delay in ms, default 0]
// A delay (a real warm invoke takes a few ms) lets the processes fall idle between requests, as they do in a fleet:
// the hop then includes waking two more of them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { Forwarder } from '../src/fleet/forward.js';
import { httpClient, printHop, row } from './stats.js';

const secret = 'bench-cluster-secret-0123456789';

/** A host of the benchmark: listens on a free loopback port, prints its URL, exits when its stdin closes. */
async function serve(role: string, ownerUrl: string | undefined, delayMs: number): Promise<void> {
  const app = Fastify({ logger: { level: 'warn' } });
  if (role === 'owner') {
    // What an invocation answers, without a VM behind it.
    app.post('/v1/functions/:id/invoke', async (request) => {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      return { request_id: 'r', status: 'success', duration_ms: 0.05, response: request.body, logs: [], error: null, cold_start: false, version: 1 };
    });
  } else {
    const forwarder = new Forwarder({ hostId: 'front', secret });
    app.addHook('onRequest', forwarder.hook(() => ({ id: 'owner', url: ownerUrl ?? '' })));
    app.post('/v1/functions/:id/invoke', async () => ({ error: 'not forwarded' }));
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  process.stdout.write(`http://127.0.0.1:${address.port}\n`);
  process.stdin.on('end', () => process.exit(0)).resume();
}

function start(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject).once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
    createInterface({ input: child.stdout }).once('line', (url) => resolve({ child, url }));
  });
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 5000);
  const delayMs = process.argv[3] ?? '0';
  const owner = await start(['owner', '', delayMs]);
  const front = await start(['front', owner.url]);
  try {
    const body = JSON.stringify({ event: { name: 'World', n: 1 } });
    const path = '/v1/functions/bench/invoke';
    await printHop('invoke', owner.url + path, front.url + path, body, count);
    const seconds = 3;
    const throughput = async (url: string) => {
      const { ok, failed } = await httpClient(`${url}${path}`, body, 'throughput', seconds, 32);
      return `${Math.round(ok / seconds)} req/s${failed ? ` (${failed} failed)` : ''}`;
    };
    row('throughput, 32 concurrent: direct', await throughput(owner.url));
    row('throughput, 32 concurrent: forwarded', await throughput(front.url));
  } finally {
    for (const { child } of [front, owner]) {
      child.removeAllListeners('exit');
      child.stdin?.end();
    }
  }
}

const [role, ownerUrl, delayMs] = process.argv.slice(2);
if (role === 'owner' || role === 'front') await serve(role, ownerUrl, Number(delayMs ?? 0));
else await main();

// Lambda API figures: warm invoke latency through the AWS SDK (@aws-sdk/client-lambda) against /v1 invoke of the
// same function in the same run, as a ratio, without a token (signatures not checked) and with one (every SDK
// request's SigV4 signature verified, /v1 with its bearer token). Rounds alternate so drift hits both alike.
// Also the guest phase during each client's rounds and the SDK's own client-side cost (the same calls against a
// server that answers at once), so a ratio above 1 can be told apart: fnvm's Lambda surface, or the SDK's
// middleware, signing and parsing in the client process (which, on a 2-core host, also takes CPU from the guest).
// BENCH_COUNT sets the invocations per round (default 1000).
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { run } from '../src/exec.js';
import { invokeTimings } from '../src/functions/service.js';
import { identityHandler } from '../src/guest/warmup.js';
import { ms, percentile, row } from './stats.js';

const count = Number(process.env.BENCH_COUNT ?? 1000);
const rounds = 3;
/** The client's warm-up calls before it measures (bench/lambda-client.ts). */
const warmUp = 200;

async function samples(base: string, mode: 'sdk' | 'v1', secret: string | undefined): Promise<number[]> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'lambda-client.js');
  const stdout = await run(process.execPath, [script, base, 'bench', mode, String(count), ...(secret ? [secret] : [])]);
  const parsed: unknown = JSON.parse(stdout.toString());
  if (typeof parsed !== 'object' || parsed === null || !('samples' in parsed) || !Array.isArray(parsed.samples)) throw new Error('bad client output');
  return parsed.samples.filter((s): s is number => typeof s === 'number');
}

/** The guest phase of each invocation (getting the VM and the channel round trip), from the service's channel. */
class GuestTime {
  private samples: number[] = [];
  private readonly onTimings = (message: unknown) => {
    if (typeof message === 'object' && message !== null && 'guestMs' in message && typeof message.guestMs === 'number') this.samples.push(message.guestMs);
  };
  constructor() {
    invokeTimings.subscribe(this.onTimings);
  }
  /** What was collected since the last take, without the client's warm-up calls. */
  take(): number[] {
    const taken = this.samples.slice(warmUp);
    this.samples = [];
    return taken;
  }
  close(): void {
    invokeTimings.unsubscribe(this.onTimings);
  }
}

/** The SDK against a server that answers every request at once: what the client alone costs per call. */
async function sdkOwnCost(): Promise<number[]> {
  const stub = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"n":1}'));
  });
  await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
  const address = stub.address();
  try {
    if (address === null || typeof address === 'string') throw new Error('no port');
    return await samples(`http://127.0.0.1:${address.port}`, 'sdk', undefined);
  } finally {
    stub.close();
  }
}

async function measure(label: string, token: string | undefined): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-bench-lambda-'));
  const config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'warn', apiToken: token };
  const server = await startServer(config, (m) => process.stderr.write(`[fnvm] ${m}\n`));
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) };
    const created = await fetch(`${server.url}/v1/functions`, { method: 'POST', headers, body: JSON.stringify({ name: 'bench', runtime: 'node', code: identityHandler.node }) });
    if (created.status !== 200) throw new Error(await created.text());
    for (;;) {
      const got: unknown = await (await fetch(`${server.url}/v1/functions/bench`, { headers })).json();
      const state = typeof got === 'object' && got !== null && 'item' in got && typeof got.item === 'object' && got.item !== null && 'state' in got.item ? got.item.state : undefined;
      if (state === 'ready') break;
      if (state === 'error') throw new Error('the function did not deploy');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const sdk: number[] = [];
    const v1: number[] = [];
    const own: number[] = [];
    const guestV1: number[] = [];
    const guestSdk: number[] = [];
    const guest = new GuestTime();
    for (let i = 0; i < rounds; i++) {
      v1.push(...(await samples(server.url, 'v1', token)));
      guestV1.push(...guest.take());
      sdk.push(...(await samples(server.url, 'sdk', token)));
      guestSdk.push(...guest.take());
      own.push(...(await sdkOwnCost()));
    }
    guest.close();
    const p = (s: number[], q: number) => percentile(s, q);
    const both = (s: number[]) => `${ms(p(s, 50))} / ${ms(p(s, 99))}`;
    const ratio = (a: number[], b: number[]) => `${(p(a, 50) / p(b, 50)).toFixed(2)} / ${(p(a, 99) / p(b, 99)).toFixed(2)}`;
    row(`${label}: /v1 invoke p50 / p99`, both(v1));
    row(`${label}: SDK Invoke p50 / p99`, both(sdk));
    row(`${label}: SDK / v1 ratio p50 / p99 (target <= 1.2)`, ratio(sdk, v1));
    row('  guest phase during the /v1 rounds', both(guestV1));
    row('  guest phase during the SDK rounds', both(guestSdk));
    row('  the SDK client alone (a server that answers at once)', both(own));
    row('  SDK - v1 - the SDK alone, p50 (the Lambda surface)', ms(p(sdk, 50) - p(v1, 50) - p(own, 50)));
  } finally {
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

row('invocations per client, rounds', `${count} x ${rounds}`);
await measure('no token', undefined);
await measure('token (SigV4 verified)', 'bench-secret');

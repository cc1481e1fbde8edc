// kill -9 of the server under load and mid-deploy, then a restart on the same data: nothing acknowledged is
// lost, cut-off deploys resume, no QEMU or socket of the dead server remains. Plus graceful SIGTERM.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { processesUsing } from '../src/vm/orphans.js';
import { startCli, type CliServer } from './support/cli.js';
import { processExists } from './support/vm-env.js';

const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-restart-'));
const children: CliServer[] = [];

after(() => {
  for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

async function startServer(): Promise<CliServer> {
  const started = await startCli({ FNVM_DATA_DIR: dataDir });
  children.push(started);
  return started;
}

async function api(base: string, path: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const ready = (base: string, id: string) =>
  until(`${id} to settle`, async () => {
    const { body } = await api(base, `/v1/functions/${id}`);
    return ['ready', 'error'].includes(body.item.state) ? body.item : undefined;
  });

test('kill -9 during invoke traffic and a deploy loses nothing acknowledged and leaves no VM behind', async () => {
  const first = await startServer();
  const steady = await api(first.url, '/v1/functions', 'POST', { name: 'steady', runtime: 'node', code: 'exports.handler = (e) => e.n' });
  assert.equal((await ready(first.url, steady.body.id)).state, 'ready');

  const acknowledged: string[] = [];
  let stop = false;
  const traffic = Array.from({ length: 4 }, async (_, w) => {
    for (let n = 0; !stop; n++) {
      try {
        const r = await api(first.url, '/v1/functions/steady/invoke', 'POST', { event: { n: w * 1e6 + n } });
        if (r.status === 200 && r.body.status === 'success') acknowledged.push(r.body.request_id);
      } catch {
        return; // the server died mid-request: that invocation was never acknowledged
      }
    }
  });
  await until('some acknowledged invocations', async () => (acknowledged.length >= 50 ? true : undefined));
  const cutOff = await api(first.url, '/v1/functions', 'POST', { name: 'cut-off', runtime: 'python', code: 'def handler(e):\n    return 7' });
  first.process.kill('SIGKILL');
  await first.exited;
  stop = true;
  await Promise.all(traffic);

  const runDir = join(tmpdir(), `fnvm-${first.process.pid}`);
  await until('the dead server\'s QEMU processes to end', async () => (processesUsing(`${runDir}/`).length === 0 ? true : undefined), 10_000);

  const second = await startServer();
  assert.equal(existsSync(runDir), false, 'the dead server\'s sockets were reaped');
  const names = (await api(second.url, '/v1/functions')).body.items.map((f: any) => f.name).sort();
  assert.deepEqual(names, ['cut-off', 'steady']);
  assert.equal((await ready(second.url, steady.body.id)).state, 'ready');
  const resumed = await ready(second.url, cutOff.body.id);
  assert.equal(resumed.state, 'ready', resumed.error);
  assert.equal((await api(second.url, '/v1/functions/cut-off/invoke', 'POST', { event: {} })).body.response, 7);

  const logs = (await api(second.url, '/v1/functions/steady/logs?limit=1000')).body.items.map((i: any) => i.request_id);
  const missing = acknowledged.filter((id) => !logs.includes(id));
  assert.deepEqual(missing, [], `${acknowledged.length} acknowledged invocations are all recorded`);
  assert.equal(new Set(logs).size, logs.length, 'no duplicated records');

  // Graceful shutdown: an invocation in flight when SIGTERM arrives still completes.
  await api(second.url, '/v1/functions/steady', 'PUT', { code: 'exports.handler = async () => { await new Promise((r) => setTimeout(r, 1000)); return "finished"; }' });
  const inflight = api(second.url, '/v1/functions/steady/invoke', 'POST', { event: {} });
  await new Promise((resolve) => setTimeout(resolve, 200));
  second.process.kill('SIGTERM');
  const result = await inflight;
  assert.equal(result.body.response, 'finished');
  assert.equal(await second.exited, 0);
  assert.equal(processExists(second.process.pid!), false);
  assert.deepEqual(processesUsing(`${join(tmpdir(), `fnvm-${second.process.pid}`)}/`), []);
});

// Isolation for real: functions reach an outside HTTP server (in a network namespace this test creates),
// but not the fnvm API, the host's services or each other, and not each other's files.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { run } from '../src/exec.js';
import { createLinkedNamespace, sandbox } from '../src/vm/sandbox-net.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

const tag = String(process.pid % 10000);
const outside = { netns: `fnvm-t${tag}`, hostVeth: `fnvt${tag}h`, nsVeth: `fnvt${tag}n`, hostAddress: '10.198.0.1', nsAddress: '10.198.0.2' };
const { hostAddress: outsideHost, nsAddress: outsidePeer } = outside;
let fnvm: TestServer;
let outsideServer: ChildProcess | undefined;
let hostServer: Server;

const probeCode = `
const http = require('node:http');
let server;
exports.handler = async (e) => {
  if (e.listen) { server ??= http.createServer((q, s) => s.end('from-a')).listen(8080); return 'listening'; }
  if (e.write) { require('node:fs').writeFileSync('/tmp/secret-' + e.write, 'secret'); return 'written'; }
  if (e.ls) return require('node:fs').readdirSync(e.ls).sort();
  try {
    const r = await fetch(e.url, { signal: AbortSignal.timeout(e.timeout ?? 3000) });
    return { ok: true, body: await r.text() };
  } catch (error) { return { ok: false, error: String(error.cause?.code ?? error.name) }; }
};`;

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('isolation tests need root (network namespaces, nftables)');
  // An "outside" host: a network namespace with an HTTP server, reachable from the host by a veth.
  await createLinkedNamespace(outside);
  outsideServer = spawn('ip', ['netns', 'exec', outside.netns, process.execPath, '-e',
    `require('node:http').createServer((q, s) => s.end('outside:' + q.url)).listen(8080, '${outsidePeer}', () => console.log('up'))`],
  { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => outsideServer!.stdout!.once('data', resolve));
  // A service on every host address, which guests must not reach.
  hostServer = createServer((_q, s) => s.end('host-service'));
  await new Promise<void>((resolve) => hostServer.listen(0, '0.0.0.0', resolve));
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm?.stop();
  hostServer?.close();
  if (outsideServer?.pid) outsideServer.kill('SIGKILL');
  await run('ip', ['link', 'del', outside.hostVeth]).catch(() => {});
  await run('ip', ['netns', 'del', outside.netns]).catch(() => {});
});

async function deploy(name: string): Promise<void> {
  const { body } = await fnvm.api('/v1/functions', { method: 'POST', body: { name, runtime: 'node', code: probeCode } });
  assert.equal((await waitForState(fnvm, body.id)).state, 'ready');
}

const call = async (name: string, event: unknown) =>
  (await fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event } })).body.response;

test('outbound HTTP works; the fnvm API, host services and other VMs are out of reach', async () => {
  const health = (await fnvm.api('/v1/health')).body;
  assert.equal(health.network_isolation, true);
  await deploy('probe-a');
  await deploy('probe-b');

  // Generous: the first fetch in a fresh VM also compiles Node's HTTP client, slow under emulation.
  const reached = await call('probe-a', { url: `http://${outsidePeer}:8080/hello`, timeout: 30_000 });
  assert.deepEqual(reached, { ok: true, body: 'outside:/hello' });

  // probe-b's HTTP client is warm after this, so a timeout below means dropped, not slow.
  assert.equal((await call('probe-b', { url: `http://${outsidePeer}:8080/`, timeout: 30_000 })).ok, true);
  const apiPort = new URL(fnvm.url).port;
  const hostPort = (hostServer.address() as AddressInfo).port;
  const unreachable: Array<[string, string]> = [
    [`http://10.0.2.2:${apiPort}/v1/health`, 'ECONNREFUSED'], // the user-mode network's "host" is the sandbox's loopback
    [`http://10.0.2.2:${hostPort}/`, 'ECONNREFUSED'],
    [`http://${sandbox.hostAddress}:${hostPort}/`, 'TimeoutError'], // the host's end of the sandbox link: dropped
    [`http://${outsideHost}:${hostPort}/`, 'TimeoutError'], // another host address: dropped
  ];
  for (const [url, expected] of unreachable) {
    const result = await call('probe-b', { url });
    assert.deepEqual(result, { ok: false, error: expected }, `${url} must be unreachable`);
  }

  assert.equal(await call('probe-a', { listen: true }), 'listening');
  assert.deepEqual(await call('probe-a', { url: 'http://127.0.0.1:8080/' }), { ok: true, body: 'from-a' });
  for (const url of ['http://10.0.2.15:8080/', 'http://10.0.2.2:8080/']) {
    assert.equal((await call('probe-b', { url })).ok, false, `probe-b cannot reach probe-a's server via ${url}`);
  }
});

test("functions cannot see each other's files", async () => {
  assert.equal(await call('probe-a', { write: 'a' }), 'written');
  assert.ok((await call('probe-a', { ls: '/tmp' })).includes('secret-a'));
  assert.ok(!(await call('probe-b', { ls: '/tmp' })).includes('secret-a'));
  assert.deepEqual(await call('probe-b', { ls: '/opt/fnvm' }), ['agent.mjs', 'agent.py']);
});

// Isolation for real: functions reach a "public" HTTP server (in a network namespace this test creates) but
// not private ranges, cloud metadata, the fnvm API, the host's services or each other, and not each
// other's files; FNVM_EGRESS_ALLOW opens a private range but never the host's own addresses.
// Every address used here lives in this test's namespace: no packet leaves the machine.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { run } from '../src/exec.js';
import { createLinkedNamespace, ensureSandboxNetwork, nameserversOf, sandbox } from '../src/vm/sandbox-net.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

const tag = String(process.pid % 10000);
const outside = { netns: `fnvm-t${tag}`, hostVeth: `fnvt${tag}h`, nsVeth: `fnvt${tag}n`, hostAddress: '10.198.0.1', nsAddress: '10.198.0.2' };
const { hostAddress: outsideHost, nsAddress: privatePeer } = outside;
const publicPeer = '203.0.113.10'; // TEST-NET-3: not in the deny list, so it stands for "the internet"
const metadata = '169.254.169.254';
// Routes to the two extra addresses apply only to traffic from the sandbox veth (a policy rule), so the
// host's own traffic to 169.254.169.254 is never diverted into this test.
const routeTable = String(20000 + Number(tag));
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
  // An "outside" host: a network namespace with an HTTP server on a private, a public and the metadata
  // address, linked to the host by a veth.
  await createLinkedNamespace(outside);
  for (const address of [publicPeer, metadata]) {
    await run('ip', ['netns', 'exec', outside.netns, 'ip', 'addr', 'add', `${address}/32`, 'dev', 'lo']);
    await run('ip', ['route', 'add', `${address}/32`, 'via', privatePeer, 'dev', outside.hostVeth, 'table', routeTable]);
  }
  await run('ip', ['rule', 'add', 'iif', sandbox.hostVeth, 'lookup', routeTable, 'pref', routeTable]);
  outsideServer = spawn('ip', ['netns', 'exec', outside.netns, process.execPath, '-e',
    "require('node:http').createServer((q, s) => s.end('outside:' + q.socket.localAddress + q.url)).listen(8080, '0.0.0.0', () => console.log('up'))"],
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
  await run('ip', ['rule', 'del', 'pref', routeTable]).catch(() => {});
  await run('ip', ['link', 'del', outside.hostVeth]).catch(() => {}); // takes its routes with it
  await run('ip', ['netns', 'del', outside.netns]).catch(() => {});
  // The table is shared by every fnvm on the host: do not leave this test's allow list applied.
  await ensureSandboxNetwork((m) => process.stderr.write(`[fnvm] ${m}\n`), { allow: [] });
});

async function deploy(name: string): Promise<void> {
  const { body } = await fnvm.api('/v1/functions', { method: 'POST', body: { name, runtime: 'node', code: probeCode } });
  assert.equal((await waitForState(fnvm, body.id)).state, 'ready');
}

const call = async (name: string, event: unknown) =>
  (await fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event } })).body.response;

/** Asserts each URL fails as expected; `via` must have fetched successfully already (warm HTTP client). */
async function assertUnreachable(via: string, cases: Array<[string, string]>): Promise<void> {
  for (const [url, expected] of cases) {
    const result = await call(via, { url });
    assert.deepEqual(result, { ok: false, error: expected }, `${url} must be unreachable${await staleRulesetHint()}`);
  }
}

/** Other fnvm servers on this host re-apply their own version of the shared table when they start. */
async function staleRulesetHint(): Promise<string> {
  const table = (await run('nft', ['list', 'table', 'inet', 'fnvm'])).toString();
  return table.includes('chain egress') ? '' : ' (the live table inet fnvm is an older fnvm\'s, re-applied by another server: re-run)';
}

const dropped = 'TimeoutError';

test('outbound HTTP reaches public addresses only; the fnvm API, host services and other VMs are out of reach', async () => {
  const health = (await fnvm.api('/v1/health')).body;
  assert.equal(health.network_isolation, true);
  assert.deepEqual(health.egress_allow, []);
  await deploy('probe-a');
  await deploy('probe-b');

  // Generous: the first fetch in a fresh VM also compiles Node's HTTP client, slow under emulation.
  const reached = await call('probe-a', { url: `http://${publicPeer}:8080/hello`, timeout: 30_000 });
  assert.deepEqual(reached, { ok: true, body: `outside:${publicPeer}/hello` }, `a public address is reachable${await staleRulesetHint()}`);

  // probe-b's HTTP client is warm after this, so a timeout below means dropped, not slow.
  assert.equal((await call('probe-b', { url: `http://${publicPeer}:8080/`, timeout: 30_000 })).ok, true);
  const apiPort = new URL(fnvm.url).port;
  const hostPort = (hostServer.address() as AddressInfo).port;
  await assertUnreachable('probe-b', [
    [`http://${metadata}:8080/latest/meta-data/`, dropped], // cloud metadata (a fake one, in the test's namespace)
    [`http://${privatePeer}:8080/`, dropped], // a private (10/8) address
    [`http://10.0.2.2:${apiPort}/v1/health`, 'ECONNREFUSED'], // the user-mode network's "host" is the sandbox's loopback
    [`http://10.0.2.2:${hostPort}/`, 'ECONNREFUSED'],
    [`http://${sandbox.hostAddress}:${hostPort}/`, dropped], // the host's end of the sandbox link
    [`http://${outsideHost}:${hostPort}/`, dropped], // another host address
  ]);
  assert.equal((await call('probe-b', { url: `http://[fec0::2]:${apiPort}/` })).ok, false, 'no IPv6 path');

  assert.equal(await call('probe-a', { listen: true }), 'listening');
  assert.deepEqual(await call('probe-a', { url: 'http://127.0.0.1:8080/' }), { ok: true, body: 'from-a' });
  for (const url of ['http://10.0.2.15:8080/', 'http://10.0.2.2:8080/']) {
    assert.equal((await call('probe-b', { url })).ok, false, `probe-b cannot reach probe-a's server via ${url}`);
  }
});

// Guest DNS (10.0.2.3) is forwarded by QEMU to the host's nameservers. A real lookup would leave the
// machine, so this checks the applied rules instead: those nameservers, port 53 only, ahead of the deny list.
test("the host's nameservers stay reachable on port 53, and only there", async () => {
  const all = nameserversOf(readFileSync('/etc/resolv.conf', 'utf8'));
  assert.ok(all[0] && !all[0].startsWith('127.'), `the host's first IPv4 nameserver must not be loopback (else functions have no DNS): ${all.join(',')}`);
  const usable = all.filter((address) => !address.startsWith('127.'));
  const table = (await run('nft', ['list', 'table', 'inet', 'fnvm'])).toString() + await staleRulesetHint();
  const set = /set nameservers \{[^}]*elements = \{([^}]*)\}/.exec(table)?.[1] ?? '';
  assert.deepEqual(set.split(',').map((s) => s.trim()).sort(), [...usable].sort(), table);
  const egress = table.split('chain egress')[1] ?? '';
  const dns = egress.indexOf('ip daddr @nameservers meta l4proto { tcp, udp } th dport 53 accept');
  assert.ok(dns > 0 && dns < egress.indexOf('ip daddr @denied drop'), table);
});

test("functions cannot see each other's files", async () => {
  assert.equal(await call('probe-a', { write: 'a' }), 'written');
  assert.ok((await call('probe-a', { ls: '/tmp' })).includes('secret-a'));
  assert.ok(!(await call('probe-b', { ls: '/tmp' })).includes('secret-a'));
  assert.deepEqual(await call('probe-b', { ls: '/opt/fnvm' }), ['agent.mjs', 'agent.py', 'fnvm_sys.node']);
});

test("FNVM_EGRESS_ALLOW opens a private range, but never the host's own addresses in it", async () => {
  await fnvm.stop();
  const allow = ['10.198.0.0/16', `${metadata}/32`];
  fnvm = await startTestServer({ egressAllow: allow });
  assert.deepEqual((await fnvm.api('/v1/health')).body.egress_allow, allow);
  await deploy('probe-c');
  const reached = await call('probe-c', { url: `http://${privatePeer}:8080/db`, timeout: 30_000 });
  assert.deepEqual(reached, { ok: true, body: `outside:${privatePeer}/db` });
  // Also the control for the first test: the fake metadata server is routed, so there it was the policy.
  assert.deepEqual(await call('probe-c', { url: `http://${metadata}:8080/` }), { ok: true, body: `outside:${metadata}/` });
  const hostPort = (hostServer.address() as AddressInfo).port;
  await assertUnreachable('probe-c', [
    [`http://${outsideHost}:${hostPort}/`, dropped], // a host address inside the allowed range
    [`http://${sandbox.hostAddress}:${hostPort}/`, dropped],
  ]);
});

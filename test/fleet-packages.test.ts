// Deployment packages in a fleet: three `fnvm serve` processes on one real PostgreSQL. A packaged function
// created through a host without room for it runs on another host, which never had its zip; one created through
// A and updated with a new package through C (forwarded to A) runs its new package through B; after kill -9 of A
// it is adopted by B, which fetches the package from the shared database and serves the new version, its files
// and its zip as uploaded. A function asleep on a host that dies is deployed by its new owner (which fetches its
// package first) rather than held asleep without its image.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from 'pg';
import { eventually } from './support/eventually.js';
import { TestFleet } from './support/fleet.js';
import { zipOf } from './support/zips.js';

const secret = 'fleet-packages-secret-0123456789abcdef';

type Answer = { status: number; body: any };

async function api(base: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<Answer> {
  const response = await fetch(base + path, {
    method: init.method ?? 'GET',
    headers: init.body === undefined ? {} : { 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text) };
}

/** A package of two files: the handler and a module it requires. */
const appZip = (version: number) => zipOf({
  'index.js': 'const lib = require("./lib.js");\nexports.handler = async (event) => ({ version: lib.version, n: event.n });\n',
  'lib.js': `exports.version = ${version};\n`,
});
const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('deployment packages in a fleet of three hosts', () => {
  const fleet = new TestFleet(secret);
  const { hosts } = fleet;
  const [startHost, url] = [fleet.start.bind(fleet), fleet.url.bind(fleet)];
  /** Whether a host has the package on its own disk. */
  const onDisk = (host: string, sha256: string) => existsSync(join(fleet.dataDir(host), 'packages', sha256, 'image.ext4'));
  const blobsInDatabase = async (): Promise<string[]> => {
    const client = new Client({ connectionString: fleet.databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ sha256: string }>('SELECT sha256 FROM package_blobs ORDER BY sha256');
      return rows.map((r) => r.sha256);
    } finally {
      await client.end();
    }
  };
  /** The function's item once it is ready, through `via`. */
  const ready = (fn: string, via: string) => eventually(`${fn} to be ready`, async () => {
    const { status, body } = await api(url(via), `/v1/functions/${fn}`);
    if (status === 503) return undefined; // being placed
    assert.equal(status, 200, JSON.stringify(body));
    assert.notEqual(body.item.state, 'error', body.item.error);
    return body.item.state === 'ready' ? body.item : undefined;
  }, 120_000);
  const invoke = async (fn: string, via: string, n: unknown) => {
    const invoked = await api(url(via), `/v1/functions/${fn}/invoke`, { method: 'POST', body: { event: { n } } });
    assert.equal(invoked.status, 200, `via ${via}: ${JSON.stringify(invoked.body)}`);
    assert.equal(invoked.body.status, 'success', JSON.stringify(invoked.body));
    return invoked.body.response;
  };

  before(async () => {
    await fleet.open();
    await startHost('a');
    await startHost('b');
    await startHost('c', { FNVM_HOST_MEMORY_MB: '200' }); // no room for a function of 256 MiB
  });
  after(() => fleet.stop());

  test('created through a host without room: another host fetches the package and runs it', async () => {
    const zip = await appZip(7);
    const sha = sha256Of(zip);
    const created = await api(url('c'), '/v1/functions', { method: 'POST', body: { name: 'placed', runtime: 'node', package: zip.toString('base64'), memory_mb: 256 } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.deepEqual(await blobsInDatabase(), [sha], 'in the database once the create has answered');
    const item = await ready('placed', 'c');
    assert.equal(item.package.sha256, sha);
    assert.ok(item.host_id === 'a' || item.host_id === 'b', `held by ${item.host_id}`);
    assert.deepEqual(await invoke('placed', 'c', 'c'), { version: 7, n: 'c' });
    assert.ok(onDisk(item.host_id, sha), 'the owner fetched it');
    assert.equal(onDisk('c', sha), false, 'the host that took the upload keeps no copy of a function it does not hold');
    assert.equal((await api(url('a'), '/v1/functions/placed', { method: 'DELETE' })).status, 200);
  });

  test('create via A, invoke via B, new package via C while A holds it; kill -9 A: B fetches the new package and serves it', async () => {
    const [zip1, zip2] = [await appZip(1), await appZip(2)];
    const [sha1, sha2] = [sha256Of(zip1), sha256Of(zip2)];
    const created = await api(url('a'), '/v1/functions', { method: 'POST', body: { name: 'app', runtime: 'node', package: zip1.toString('base64'), memory_mb: 256 } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal((await ready('app', 'b')).host_id, 'a', 'A had room: it holds the function');
    assert.deepEqual(await invoke('app', 'b', 1), { version: 1, n: 1 });

    const updated = await api(url('c'), '/v1/functions/app', { method: 'PUT', body: { package: zip2.toString('base64') } });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual([updated.body.item.version, updated.body.item.package.sha256, updated.body.item.host_id], [2, sha2, 'a']);
    assert.ok((await blobsInDatabase()).includes(sha2), 'the new package is in the database once the update has answered');
    for (const via of ['b', 'a']) assert.deepEqual(await invoke('app', via, via), { version: 2, n: via }, `via ${via} right after the update`);
    for (const host of ['b', 'c']) assert.deepEqual([onDisk(host, sha1), onDisk(host, sha2)], [false, false], `${host} never had the packages`);

    const a = hosts.get('a');
    a?.process.kill('SIGKILL');
    await a?.exited;
    const adopted = await eventually('app to be held by B', async () => {
      const { status, body } = await api(url('c'), '/v1/functions/app');
      return status === 200 && body.item.host_id === 'b' && body.item.state === 'ready' ? body.item : undefined;
    }, 120_000);
    assert.equal(adopted.version, 2);
    assert.deepEqual(await invoke('app', 'c', 'after'), { version: 2, n: 'after' });
    assert.deepEqual([onDisk('b', sha1), onDisk('b', sha2)], [false, true], 'B fetched the current package only');

    // The new owner serves the package's files and its zip as uploaded.
    const files = await api(url('c'), '/v1/functions/app/package/files');
    assert.equal(files.status, 200, JSON.stringify(files.body));
    assert.deepEqual(files.body.files.map((f: { path: string }) => f.path).sort(), ['index.js', 'lib.js']);
    const download = await fetch(`${url('c')}/v1/functions/app/package`, { signal: AbortSignal.timeout(30_000) });
    assert.equal(download.status, 200);
    assert.equal(sha256Of(Buffer.from(await download.arrayBuffer())), sha2);
  });

  test('a function asleep on a host that dies is deployed by its new owner, which fetches its package', async () => {
    await startHost('a', { FNVM_IDLE_SECONDS: '2' }); // back, holding nothing; its functions sleep soon
    const zip = await appZip(3);
    const sha = sha256Of(zip);
    const created = await api(url('a'), '/v1/functions', { method: 'POST', body: { name: 'sleeper', runtime: 'node', package: zip.toString('base64'), memory_mb: 128 } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal((await ready('sleeper', 'a')).host_id, 'a');
    assert.deepEqual(await invoke('sleeper', 'b', 1), { version: 3, n: 1 });
    await eventually('sleeper to sleep', async () => ((await api(url('a'), '/v1/functions/sleeper')).body.item.vm_id === null ? true : undefined), 30_000);
    const a = hosts.get('a');
    a?.process.kill('SIGKILL');
    await a?.exited;
    const adopted = await eventually('sleeper to be held by another host', async () => {
      const { status, body } = await api(url('b'), '/v1/functions/sleeper');
      return status === 200 && body.item.host_id !== 'a' && body.item.state === 'ready' ? body.item : undefined;
    }, 120_000);
    assert.ok(onDisk(adopted.host_id, sha), `${adopted.host_id} fetched the package`);
    assert.deepEqual(await invoke('sleeper', 'b', 2), { version: 3, n: 2 });
  });
});

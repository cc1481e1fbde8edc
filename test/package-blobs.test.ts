// The fleet's package zips in a real PostgreSQL (src/fleet/package-blobs.ts) and a host's SharedPackages over
// them with a real PackageStore (mkfs.ext4): round trips in pieces; a blob goes only when no function uses it
// and its grace is over, and a delete that races with a touch of the blob (a create elsewhere reusing the
// package) leaves it; a host fetches a package it lacks, checks its SHA-256 and validates it like an upload;
// packages stored before the fleet kept them are uploaded at the start.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import { Client, Pool } from 'pg';
import { PackageBlobs, type PackageBlobTables } from '../src/fleet/package-blobs.js';
import { SharedPackages } from '../src/packages/shared.js';
import { PackageStore } from '../src/packages/store.js';
import type { PackageBlobStore, PackageInfo } from '../src/packages/types.js';
import { openPostgresStore, pgTypes } from '../src/store/postgres.js';
import type { Store } from '../src/store/types.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { zipOf } from './support/zips.js';

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe('package blobs in the shared database', () => {
  let postgres: TestPostgres;
  let url: string;
  let store: Store;
  let db: Kysely<PackageBlobTables>;
  let root: string;
  let next = 0;

  before(async () => {
    postgres = await startPostgres();
    url = await postgres.createDatabase();
    store = await openPostgresStore(url); // migrates
    const pool = new Pool({ connectionString: url, types: pgTypes });
    pool.on('error', () => {}); // an idle connection ended by the server's shutdown at the end
    db = new Kysely<PackageBlobTables>({ dialect: new PostgresDialect({ pool }) });
    root = await mkdtemp(join(tmpdir(), 'fnvm-blobs-'));
  });
  after(async () => {
    await db?.destroy();
    await store?.close();
    await postgres?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  /** A function row that uses `info` (what keeps its blob). */
  const useIn = async (info: PackageInfo) => {
    const n = next++;
    const fn = await store.createFunction({
      id: randomUUID(), name: `fn-${n}`, runtime: 'node', package: info, handler: 'index.handler', env_vars: {}, timeout_seconds: 30,
      memory_mb: 128, vcpu: 1, max_concurrency: 4, vm_id: null, guest_ip: null, port: null, state: 'creating', error: null, version: 1,
    });
    return fn.id;
  };
  const infoOf = (zip: Buffer): PackageInfo => ({ sha256: sha256Of(zip), size: zip.length, unpacked_size: 1, files: 1 });
  const exists = async (sha256: string) => (await new PackageBlobs(db).stored([sha256])).has(sha256);
  /** A host's package store on its own directory. */
  const hostStore = async () => {
    const base = join(root, `host-${next++}`);
    await mkdir(join(base, 'scratch'), { recursive: true });
    return new PackageStore(join(base, 'packages'), { scratchDir: join(base, 'scratch') });
  };

  test('a zip comes back whole, read in pieces; a second save only touches it', async () => {
    const blobs = new PackageBlobs(db, { chunkBytes: 1000 });
    const zip = randomBytes(10_500);
    const sha = sha256Of(zip);
    assert.equal(await blobs.load(sha), undefined);
    await blobs.save(sha, zip);
    assert.deepEqual(await blobs.load(sha), zip);
    await db.updateTable('package_blobs').set({ stored_at: 0 }).where('sha256', '=', sha).execute();
    await blobs.save(sha, zip);
    const row = await db.selectFrom('package_blobs').select(['size', 'stored_at']).where('sha256', '=', sha).executeTakeFirstOrThrow();
    assert.equal(row.size, zip.length);
    assert.ok(row.stored_at > Date.now() - 60_000, 'saved again: touched');
    assert.deepEqual(await blobs.stored([sha, 'f'.repeat(64)]), new Set([sha]));
    assert.deepEqual(await blobs.stored([]), new Set());
  });

  test('a blob goes with the last function that uses it, not within its grace', async () => {
    const now = new PackageBlobs(db, { graceMs: 0 });
    const later = new PackageBlobs(db); // the default grace of an hour
    const zip = randomBytes(100);
    const info = infoOf(zip);
    await now.save(info.sha256, zip);
    const [f1, f2] = [await useIn(info), await useIn(info)];
    await now.remove(info.sha256);
    assert.ok(await exists(info.sha256), 'used by two functions');
    await store.deleteFunction(f1);
    await now.remove(info.sha256);
    assert.ok(await exists(info.sha256), 'used by one');
    await store.deleteFunction(f2);
    await later.remove(info.sha256);
    assert.equal(await later.sweep(), 0);
    assert.ok(await exists(info.sha256), 'unused but saved within the grace: a create may be about to use it');
    await now.remove(info.sha256);
    assert.equal(await exists(info.sha256), false);

    // The sweep takes every unused one past its grace, and only those.
    await now.sweep(); // what the tests before left
    const [kept, swept] = [randomBytes(50), randomBytes(60)];
    await now.save(sha256Of(kept), kept);
    await now.save(sha256Of(swept), swept);
    await useIn(infoOf(kept));
    assert.equal(await now.sweep(), 1);
    assert.deepEqual(await now.stored([sha256Of(kept), sha256Of(swept)]), new Set([sha256Of(kept)]));
  });

  test('a delete racing with a touch of the blob (its package reused elsewhere) leaves it', async () => {
    const blobs = new PackageBlobs(db);
    const zip = randomBytes(200);
    const sha = sha256Of(zip);
    await blobs.save(sha, zip);
    await db.updateTable('package_blobs').set({ stored_at: 0 }).where('sha256', '=', sha).execute(); // long unused
    // Another host's save touches the row in a transaction that has not committed when the delete starts: the
    // delete's snapshot sees an old unused blob, waits for the row, and must then see the touch.
    const other = new Client({ connectionString: url });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('UPDATE package_blobs SET stored_at = (extract(epoch from clock_timestamp()) * 1000)::bigint WHERE sha256 = $1', [sha]);
      let settled = false;
      const removing = blobs.remove(sha).finally(() => (settled = true));
      await sleep(300);
      assert.equal(settled, false, 'the delete waits for the row');
      await other.query('COMMIT');
      await removing;
    } finally {
      await other.end();
    }
    assert.deepEqual(await blobs.load(sha), zip, 'the touched blob is still there');
  });

  test('a host fetches a package it lacks from the database, once, and checks it like an upload', async () => {
    const loads: string[] = [];
    const blobs = new PackageBlobs(db);
    const counting: PackageBlobStore = {
      save: (sha, zip) => blobs.save(sha, zip),
      load: (sha) => {
        loads.push(sha);
        return blobs.load(sha);
      },
      stored: (shas) => blobs.stored(shas),
      remove: (sha) => blobs.remove(sha),
    };
    const log = () => {};
    const a = new SharedPackages(await hostStore(), counting, log);
    const b = new SharedPackages(await hostStore(), counting, log);
    const zip = await zipOf({ 'index.js': 'exports.handler = async () => require("./lib.js").answer;', 'lib.js': 'exports.answer = 42;' });
    const info = await a.put(zip);
    assert.ok(await exists(info.sha256), 'a put is in the database before it resolves');
    assert.equal(b.has(info.sha256), false);
    await Promise.all([b.ensure(info.sha256), b.ensure(info.sha256)]);
    assert.deepEqual(loads, [info.sha256], 'two deploys of one package share one fetch');
    assert.ok(b.has(info.sha256));
    assert.deepEqual(await b.files(info.sha256), await a.files(info.sha256));
    assert.equal((await b.readFile(info.sha256, 'lib.js')).toString(), 'exports.answer = 42;');
    await b.ensure(info.sha256);
    assert.equal(loads.length, 1, 'here already: nothing fetched');

    // Under a name that is not its SHA-256: refused, nothing stored.
    const c = new SharedPackages(await hostStore(), counting, log);
    const wrong = 'a'.repeat(64);
    await blobs.save(wrong, zip);
    await assert.rejects(c.ensure(wrong), /the shared database holds a zip whose SHA-256 is/);
    assert.equal(c.has(wrong) || c.has(info.sha256), false);
    // Its SHA-256 right but not a package: refused as an upload would be.
    const junk = Buffer.from('not a zip at all');
    await blobs.save(sha256Of(junk), junk);
    await assert.rejects(c.ensure(sha256Of(junk)), /from the shared database is refused/);
    await assert.rejects(c.ensure('b'.repeat(64)), /neither on this host nor in the shared database/);
  });

  test('packages in use that only a host has are uploaded at its start', async () => {
    const local = await hostStore();
    const zip = await zipOf({ 'index.js': 'exports.handler = async () => "old";' });
    const info = await local.put(zip); // stored before the fleet kept packages
    const unused = await local.put(await zipOf({ 'index.js': 'exports.handler = async () => "unused";' }));
    const shared = new SharedPackages(local, new PackageBlobs(db), () => {});
    await shared.sweep(new Set([info.sha256, 'c'.repeat(64)]));
    assert.deepEqual(await new PackageBlobs(db).load(info.sha256), zip);
    assert.equal(local.has(unused.sha256), false, 'the local sweep as before');
    assert.equal(await exists(unused.sha256), false);
  });
});

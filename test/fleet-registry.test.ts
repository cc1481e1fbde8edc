// The fleet's host registry on a real PostgreSQL: hosts register with leases and generations; placement claims
// check capacity under the host's row lock (a full host gets nothing; concurrent claims never make two owners or
// overfill a host); a host whose lease runs out loses its functions to a live host and is fenced when it comes back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import { anyHostHasRoom, HostRegistry, type FleetTables, type HostIdentity } from '../src/fleet/registry.js';
import { openPostgresStore, pgTypes } from '../src/store/postgres.js';
import type { Store } from '../src/store/types.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';

const leaseMs = 600;

describe('host registry', () => {
  let postgres: TestPostgres;
  let store: Store;
  let db: Kysely<FleetTables>;
  let nextFunction = 0;

  before(async () => {
    postgres = await startPostgres();
    const url = await postgres.createDatabase();
    store = await openPostgresStore(url); // migrates
    const pool = new Pool({ connectionString: url, types: pgTypes });
    pool.on('error', () => {}); // an idle connection ended by the server's shutdown at the end
    db = new Kysely<FleetTables>({ dialect: new PostgresDialect({ pool }) });
  });
  after(async () => {
    await db?.destroy();
    await store?.close();
    await postgres?.stop();
  });

  const host = (id: string, memory_mb = 1024, max_functions = 100): HostIdentity => ({ id, url: `http://127.0.0.1:1${id.length}000/${id}`, vcpu: 2, memory_mb, max_functions, max_live_vms: 8 });
  const newFunction = async (memory_mb = 128) => {
    const n = nextFunction++;
    const fn = await store.createFunction({
      id: `fn-${n}`, name: `fn-${n}`, runtime: 'node', code: 'x', handler: 'index.handler', env_vars: {}, timeout_seconds: 30,
      memory_mb, vcpu: 1, max_concurrency: 4, vm_id: null, guest_ip: null, port: null, state: 'creating', error: null, version: 1,
    });
    return fn.id;
  };
  const ownerOf = async (id: string) => (await db.selectFrom('functions').select(['host_id', 'host_generation']).where('id', '=', id).executeTakeFirstOrThrow());

  test('registering again bumps the generation; a full host gets nothing; list shows what each holds', async () => {
    const a = new HostRegistry(db, host('a', 256, 10), leaseMs);
    assert.equal(await a.register(), 1);
    assert.equal(await a.register(), 2);
    const [f1, f2, f3] = [await newFunction(128), await newFunction(128), await newFunction(64)];
    assert.deepEqual([await a.claim(f1), await a.claim(f2)], [true, true]);
    assert.equal(await a.claim(f3), false, 'a host with 256 MiB holding 2 x 128 MiB takes no 64 MiB more');
    assert.deepEqual(await ownerOf(f1), { host_id: 'a', host_generation: 2 });
    assert.deepEqual((await a.placement()).owned.sort(), [f1, f2].sort());
    const [view] = (await a.list()).filter((h) => h.id === 'a');
    assert.deepEqual(view, {
      id: 'a', url: host('a').url, alive: true, draining: false, generation: 2,
      capacity: { vcpu: 2, memory_mb: 256, max_functions: 10, max_live_vms: 8 }, used: { vcpu: 2, memory_mb: 256 }, functions: 2,
    });
    const one = new HostRegistry(db, host('one', 4096, 1), leaseMs);
    await one.register();
    assert.deepEqual([await one.claim(f3), await one.claim(await newFunction(64))], [true, false], 'max_functions 1');
    // A claimed function with a live owner is nobody else's.
    assert.equal(await one.claim(f1), false);
    await Promise.all([a.leave(), one.leave()]);
  });

  test('concurrent claims: one owner per function, and a host never holds more than it has room for', async () => {
    const hosts = ['p', 'q', 'r'].map((id) => new HostRegistry(db, host(id, 512), leaseMs));
    for (const h of hosts) await h.register();
    const fns = await Promise.all(Array.from({ length: 12 }, () => newFunction(128)));
    // Every host tries to claim every function at once: 12 functions, room for 4 each.
    const results = await Promise.all(hosts.flatMap((h) => fns.map(async (fn) => ({ host: h.id, fn, won: await h.claim(fn) }))));
    const won = results.filter((r) => r.won);
    assert.equal(won.length, 12, 'each function claimed once');
    assert.deepEqual(new Set(won.map((r) => r.fn)).size, 12);
    for (const h of hosts) assert.equal(won.filter((r) => r.host === h.id).length, 4, `${h.id} holds 512 MiB / 128 MiB`);
    for (const r of won) assert.equal((await ownerOf(r.fn)).host_id, r.host);
    await Promise.all(hosts.map((h) => h.leave()));
  });

  test('a host whose lease runs out loses its functions to a live host, and is fenced when it comes back', async () => {
    const dead = new HostRegistry(db, host('dead'), leaseMs);
    const live = new HostRegistry(db, host('live'), leaseMs);
    await dead.register();
    await live.register();
    const fn = await newFunction();
    assert.equal(await dead.claim(fn), true);
    assert.equal(await live.claim(fn), false, 'its owner still holds a lease');
    const held = await dead.placement();
    assert.deepEqual([held.owned, held.orphans.includes(fn)], [[fn], false], 'its own, not an orphan');
    assert.ok(!(await live.placement()).orphans.includes(fn));
    // The owner stops heartbeating (a kill -9); the other host keeps its lease alive.
    const started = Date.now();
    while (Date.now() - started < leaseMs * 1.5) {
      assert.equal(await live.heartbeat(), true);
      await sleep(leaseMs / 4);
    }
    assert.ok((await live.placement()).orphans.includes(fn));
    const lapsed = await dead.placement();
    assert.ok(lapsed.owned.includes(fn) && lapsed.orphans.includes(fn), 'its lease ran out: still its own, and an orphan');
    assert.equal(await live.claim(fn), true);
    assert.deepEqual(await ownerOf(fn), { host_id: 'live', host_generation: live.generation });
    // The old owner comes back: its heartbeat is refused (its lease expired), so it must stop serving.
    assert.equal(await dead.heartbeat(), false);
    const generation = await dead.register();
    assert.equal(generation, 2);
    assert.deepEqual((await dead.placement()).owned, [], 'a new generation owns nothing from the old one');
    const views = new Map((await live.list()).map((h) => [h.id, h]));
    assert.equal(views.get('dead')?.alive, true);
    assert.equal(views.get('dead')?.functions, 0);
    assert.equal(views.get('live')?.functions, 1);
    // A restart of a host under a new generation orphans what it held under the old one.
    const before = live.generation;
    await live.register();
    assert.notEqual(live.generation, before);
    assert.deepEqual((await live.placement()).owned, []);
    assert.ok((await dead.placement()).orphans.includes(fn));
    assert.equal(await dead.claim(fn), true);
    // Draining: a draining host takes nothing new; leaving ends its lease at once.
    await live.drain();
    assert.equal(await live.claim(await newFunction()), false);
    await dead.leave();
    assert.ok((await live.placement()).orphans.includes(fn));
    assert.equal((await live.list()).find((h) => h.id === 'dead')?.alive, false);
    await live.leave();
  });

  test('room anywhere: only live hosts that take functions count, with what they hold against their memory and count', async () => {
    await sleep(leaseMs + 100); // the hosts of earlier tests have left or lapsed
    const roomLeaseMs = 3000; // longer than the steps below take on a loaded machine, until y is left to lapse
    const x = new HostRegistry(db, host('x', 300, 2), roomLeaseMs);
    const y = new HostRegistry(db, host('y', 500), roomLeaseMs);
    const room = (memoryMb: number) => anyHostHasRoom(db, memoryMb);
    await x.register();
    assert.deepEqual([await room(300), await room(301)], [true, false], 'x alone: 300 MiB free');
    assert.equal(await x.claim(await newFunction(200)), true);
    assert.deepEqual([await room(100), await room(101)], [true, false], 'x holds 200 of its 300 MiB');
    assert.equal(await x.claim(await newFunction(64)), true);
    assert.equal(await room(1), false, 'x holds its 2 functions at most');
    await y.register();
    assert.deepEqual([await room(500), await room(501)], [true, false], 'y has room');
    await y.drain();
    assert.equal(await room(128), false, 'a draining host takes nothing');
    await y.register(); // back, not draining, then gone without leaving: its lease runs out
    assert.equal(await room(128), true);
    await sleep(roomLeaseMs + 100);
    assert.equal(await room(128), false, 'a host whose lease ran out has no room');
    await x.leave();
  });
});

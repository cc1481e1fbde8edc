// Tests of both stores through the Store interface: SQLite on real database files in a temporary directory,
// PostgreSQL on databases of a real server started for this file. Then what only one of them has: SQLite's WAL,
// checkpoints, files and migration from an old file; PostgreSQL's transactions, hosts starting at once, and
// the errors of a database that cannot be used.
import assert from 'node:assert/strict';
import { copyFileSync, statSync } from 'node:fs';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, sql } from 'kysely';
import { checkpointIntervalMs } from '../src/store/checkpointer.js';
import { migrations } from '../src/store/migrations.js';
import { openPostgresStore } from '../src/store/postgres.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { NameTakenError, type AsyncEvent, type InvocationRecord, type NewFunction, type Store } from '../src/store/types.js';
import { eventually } from './support/eventually.js';
import { forEachStore, rawPostgres, sqliteBackend, withPostgres, type StoreBackend } from './support/stores.js';

const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const MIGRATIONS = [
  '0001_initial', '0002_derived_last_invoked_at', '0003_snapstart', '0004_packages', '0005_invocation_stats', '0006_async_events', '0007_lambda_fields', '0008_fleet', '0009_package_blobs', '0010_event_leases',
];

let nextId = 0;

function uid(prefix: string): string {
  return `${prefix}-${nextId++}`;
}

function newFunction(overrides: Partial<NewFunction> = {}): NewFunction {
  return {
    id: uid('fn'),
    name: uid('name'),
    runtime: 'node',
    code: 'export const handler = () => 42;',
    handler: 'index.handler',
    env_vars: { A: '1' },
    timeout_seconds: 30,
    memory_mb: 128,
    vcpu: 1,
    max_concurrency: 4,
    vm_id: null,
    guest_ip: null,
    port: null,
    state: 'creating',
    error: null,
    version: 1,
    ...overrides,
  };
}

function newInvocation(functionId: string, overrides: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id: uid('inv'),
    function_id: functionId,
    request_id: uid('req'),
    status: 'success',
    duration_ms: 12.5,
    invoked_at: new Date().toISOString(),
    version: 1,
    cold_start: false,
    logs: [],
    error: null,
    attempt: 1,
    async: false,
    ...overrides,
  };
}

const newEvent = (functionId: string, overrides: Partial<AsyncEvent> = {}): AsyncEvent => ({
  request_id: uid('req'), function_id: functionId, payload: '{"n":1}', state: 'queued', attempts: 0, failures: 0,
  enqueued_at: 1000, next_attempt_at: 1000, last_error: null, dead_reason: null, updated_at: 1000, ...overrides,
});

/** Records `count` invocations and returns them oldest first. */
async function recordMany(store: Store, functionId: string, count: number, retention = 1000): Promise<InvocationRecord[]> {
  const recorded: InvocationRecord[] = [];
  for (let i = 0; i < count; i++) {
    const invocation = newInvocation(functionId);
    await store.recordInvocation(invocation, retention);
    recorded.push(invocation);
  }
  return recorded;
}

const ids = (records: { id: string }[]): string[] => records.map((r) => r.id);

/** Opens a store (on a new database unless given one) and closes it when the test ends. */
async function openStore(t: TestContext, backend: StoreBackend, database?: string): Promise<Store> {
  const store = await backend.open(database ?? await backend.fresh());
  t.after(() => store.close());
  return store;
}

forEachStore((backend) => {
  describe('functions', () => {
    test('the description and what Lambda clients set are kept and updated', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction({ ...newFunction(), description: 'résumé ✓', lambda_role: 'arn:aws:iam::000000000000:role/r', lambda_runtime: 'python3.12' });
      assert.deepEqual([fn.description, fn.lambda_role, fn.lambda_runtime], ['résumé ✓', 'arn:aws:iam::000000000000:role/r', 'python3.12']);
      const updated = await store.updateFunction(fn.id, { description: '', lambda_runtime: null });
      assert.deepEqual([updated?.description, updated?.lambda_role, updated?.lambda_runtime], ['', 'arn:aws:iam::000000000000:role/r', null]);
      assert.deepEqual(await store.getFunction(fn.id), updated);
    });

    test('create, get, get by name, and list oldest first', async (t) => {
      const store = await openStore(t, backend);
      const input = newFunction({ name: 'alpha' });
      const created = await store.createFunction(input);
      assert.deepEqual(created, {
        ...input, created_at: created.created_at, updated_at: created.created_at, last_invoked_at: null, init_ms: null, snapshot_bytes: null,
        description: '', lambda_role: null, lambda_runtime: null, async_max_retries: 2, async_max_event_age_seconds: 21_600, async_configured_at: null, host_id: null,
      });
      assert.match(created.created_at, ISO_UTC_MS);

      // Created within the same millisecond or so: the order must come from creation order, not the clock.
      const others = [];
      for (let i = 0; i < 5; i++) others.push(await store.createFunction(newFunction()));
      assert.deepEqual(await store.getFunction(created.id), created);
      assert.deepEqual(await store.getFunctionByName('alpha'), created);
      assert.deepEqual(await store.listFunctions(), [created, ...others]);
      assert.equal(await store.getFunction('missing'), undefined);
      assert.equal(await store.getFunctionByName('missing'), undefined);
    });

    test('a taken name throws NameTakenError on create and on rename', async (t) => {
      const store = await openStore(t, backend);
      const first = await store.createFunction(newFunction({ name: 'taken' }));
      await assert.rejects(store.createFunction(newFunction({ id: first.id })), (err: unknown) => !(err instanceof NameTakenError), 'a taken id is another error');
      await assert.rejects(store.createFunction(newFunction({ name: 'taken' })), (err: unknown) => {
        assert.ok(err instanceof NameTakenError);
        assert.equal(err.functionName, 'taken');
        return true;
      });

      const other = await store.createFunction(newFunction({ name: 'other' }));
      await assert.rejects(store.updateFunction(other.id, { name: 'taken' }), NameTakenError);
      assert.deepEqual(await store.getFunction(other.id), other, 'a failed rename changes nothing');
      assert.equal((await store.updateFunction(other.id, { name: 'free' }))?.name, 'free');
    });

    test('update applies the patch and bumps only updated_at', async (t) => {
      const store = await openStore(t, backend);
      const created = await store.createFunction(newFunction());
      await sleep(5); // so the new updated_at differs at millisecond resolution
      const patch = {
        env_vars: { KEY: 'value', EMPTY: '', QUOTE: '"x"\n' },
        code: 'new code',
        state: 'ready',
        vm_id: 'vm-1',
        guest_ip: '10.0.0.2',
        port: 8080,
        version: 2,
        init_ms: 1534.125,
        snapshot_bytes: 5 * 2 ** 30, // past 2^32: a big guest's snapshot
      } as const;
      const updated = await store.updateFunction(created.id, patch);
      assert.ok(updated);
      assert.deepEqual(updated, { ...created, ...patch, updated_at: updated.updated_at });
      assert.equal(updated.created_at, created.created_at);
      assert.ok(updated.updated_at > created.updated_at);
      assert.deepEqual(await store.getFunction(created.id), updated);

      await sleep(5);
      const touched = await store.updateFunction(created.id, {});
      assert.ok(touched && touched.updated_at > updated.updated_at, 'an empty patch still bumps updated_at');
      assert.equal(await store.updateFunction('missing', { state: 'error' }), undefined);
    });

    test('delete removes the function and its invocations', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const kept = await store.createFunction(newFunction());
      await recordMany(store, fn.id, 3);
      await recordMany(store, kept.id, 2);

      assert.equal(await store.deleteFunction(fn.id), true);
      assert.equal(await store.getFunction(fn.id), undefined);
      assert.equal(await store.countInvocations(fn.id), 0);
      assert.deepEqual(await store.listInvocations(fn.id, 10, 0), []);
      assert.equal(await store.countInvocations(kept.id), 2);
      assert.equal(await store.deleteFunction(fn.id), false);
    });

    test('a function has code or a package: storing one drops the other, and both survive a reopen', async () => {
      const database = await backend.fresh();
      const store = await backend.open(database);
      const pkg = { sha256: 'ab'.repeat(32), size: 1234, unpacked_size: 56789, files: 12 };
      const { code: _code, ...withoutCode } = newFunction();
      const created = await store.createFunction({ ...withoutCode, package: pkg });
      assert.deepEqual(created.package, pkg);
      assert.equal('code' in created, false, 'a packaged function has no code key');
      const toCode = await store.updateFunction(created.id, { code: 'exports.handler = () => 1;' });
      assert.equal(toCode?.code, 'exports.handler = () => 1;');
      assert.equal('package' in (toCode ?? {}), false, 'new code dropped the package');
      const other = { ...pkg, sha256: 'cd'.repeat(32), files: 3 };
      await store.updateFunction(created.id, { package: other });
      await store.close();
      const reopened = await backend.open(database);
      const loaded = await reopened.getFunction(created.id);
      await reopened.close();
      assert.deepEqual(loaded?.package, other);
      assert.equal(loaded?.code, undefined);
    });

    test('the foreign key cascades deletes done outside the store', async (t) => {
      const database = await backend.fresh();
      const store = await openStore(t, backend, database);
      const fn = await store.createFunction(newFunction());
      await recordMany(store, fn.id, 2);
      await store.enqueueEvent(newEvent(fn.id));
      await backend.raw(t, database).deleteFrom('functions').where('id', '=', fn.id).execute();
      assert.equal(await store.countInvocations(fn.id), 0);
      assert.deepEqual(await store.listQueuedEvents(), []);
    });
  });

  describe('async events', () => {
    test('enqueue, claim, dead letters newest first, counts, discard', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const other = await store.createFunction(newFunction());
      const a = newEvent(fn.id, { payload: '{"event":"a"}' });
      const b = newEvent(fn.id, { payload: '{"event":"b ✓"}' });
      const elsewhere = newEvent(other.id);
      await Promise.all([store.enqueueEvent(a), store.enqueueEvent(b), store.enqueueEvent(elsewhere)]);
      assert.deepEqual(await store.getEvent(a.request_id), a);
      // Saves carry no payload and never touch the stored one; the queue's listings leave payloads out.
      const { payload: _a, ...queuedA } = a;
      const { payload: _b, ...queuedB } = b;
      const { payload: _c, ...queuedElsewhere } = elsewhere;
      const claimed = { ...queuedA, attempts: 1, failures: 1, next_attempt_at: 5000, updated_at: 2000 };
      await store.saveEvent(claimed);
      assert.deepEqual(await store.getEvent(a.request_id), { ...claimed, payload: a.payload });
      assert.equal(await store.eventPayload(b.request_id), b.payload);
      assert.equal(await store.eventPayload('no-such-event'), undefined);
      assert.deepEqual((await store.listQueuedEvents(fn.id)).sort((x, y) => x.updated_at - y.updated_at), [queuedB, claimed]);
      assert.deepEqual(await store.listQueuedEvents(other.id), [queuedElsewhere]);
      assert.equal((await store.listQueuedEvents()).length, 3);
      await store.deleteEvent(elsewhere.request_id);
      const deadA = { ...claimed, state: 'dead' as const, dead_reason: 'RetriesExhausted' as const, last_error: { type: 'Error', message: 'é ✓' }, updated_at: 3000 };
      const deadB = { ...queuedB, state: 'dead' as const, dead_reason: 'EventAgeExceeded' as const, updated_at: 4000 };
      await store.saveEvent(deadA);
      await store.saveEvent(deadB);
      assert.deepEqual(await store.listDeadLetters(fn.id, 10, 0), [{ ...deadB, payload: b.payload }, { ...deadA, payload: a.payload }]);
      assert.deepEqual(await store.listDeadLetters(fn.id, 1, 1), [{ ...deadA, payload: a.payload }]);
      assert.deepEqual(await store.listDeadEvents(fn.id, 10, 0), [deadB, deadA]);
      assert.deepEqual(await store.countDeadLetters(), new Map([[fn.id, 2]]));
      assert.deepEqual(await store.countDeadLetters(other.id), new Map());
      assert.deepEqual(await store.listQueuedEvents(), []);
      assert.equal(await store.deleteEvent(deadA.request_id), true);
      assert.equal(await store.deleteEvent(deadA.request_id), false);
      assert.deepEqual(await store.countDeadLetters(), new Map([[fn.id, 1]]));
    });

    test('claims lease an event to one host: another host waits for the lease to end or the attempt to settle', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const event = newEvent(fn.id);
      await store.enqueueEvent(event);
      const { payload: _payload, ...queued } = event;
      const claim = (attempts: number) => ({ ...queued, attempts, failures: attempts, updated_at: 1000 + attempts });
      assert.equal(await store.claimEvent(claim(1), 'host-a', 60_000), true);
      assert.deepEqual(await store.getEvent(event.request_id), { ...claim(1), payload: event.payload }, 'the claim is written');
      assert.equal(await store.claimEvent(claim(2), 'host-b', 60_000), false, 'host-a holds a live lease');
      assert.equal((await store.getEvent(event.request_id))?.attempts, 1, 'a refused claim writes nothing');
      assert.equal(await store.claimEvent(claim(2), 'host-a', 60_000), true, 'its own lease does not stop a host');
      // A settlement (here a retry saved with the record) ends the lease.
      await store.recordInvocation(newInvocation(fn.id, { request_id: event.request_id, async: true, status: 'error' }), 100, { save: claim(2) });
      assert.equal(await store.claimEvent(claim(3), 'host-b', 200), true);
      // A lease runs out: a dead host's attempt is picked up after it.
      assert.equal(await store.claimEvent(claim(4), 'host-a', 200), false);
      await sleep(300);
      assert.equal(await store.claimEvent(claim(4), 'host-a', 60_000), true);
      assert.equal(await store.claimEvent({ ...claim(5), request_id: 'no-such-event' }, 'host-a', 60_000), false);
    });

    test('unix ms times beyond 2^31 and a save and a settlement of one event in one batch keep their order', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const now = Date.parse('2026-12-03T10:00:00.123Z');
      const event = newEvent(fn.id, { enqueued_at: now, next_attempt_at: now + 60_000, updated_at: now });
      await store.enqueueEvent(event);
      assert.deepEqual(await store.getEvent(event.request_id), event);
      const claimed = { ...event, attempts: 1, updated_at: now + 1 };
      const retried = { ...claimed, failures: 1, next_attempt_at: now + 120_000, updated_at: now + 2 };
      // The claim and the attempt's record arrive in one turn: the settlement, which comes later, wins.
      await Promise.all([
        store.saveEvent(claimed),
        store.recordInvocation(newInvocation(fn.id, { request_id: event.request_id, async: true, status: 'error' }), 10, { save: retried }),
      ]);
      assert.deepEqual(await store.getEvent(event.request_id), retried);
    });

    test('an attempt\'s record commits with its settlement; a failed commit leaves the event as it was', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const done = newEvent(fn.id, { attempts: 1, failures: 1 });
      const retried = newEvent(fn.id, { attempts: 1, failures: 1 });
      await Promise.all([store.enqueueEvent(done), store.enqueueEvent(retried)]);
      const later = { ...retried, next_attempt_at: 9000, last_error: { type: 'Error', message: 'x' } };
      await Promise.all([
        store.recordInvocation(newInvocation(fn.id, { request_id: done.request_id, async: true }), 100, { delete: done.request_id }),
        store.recordInvocation(newInvocation(fn.id, { request_id: retried.request_id, async: true, status: 'error' }), 100, { save: later }),
      ]);
      assert.equal(await store.getEvent(done.request_id), undefined);
      assert.deepEqual(await store.getEvent(retried.request_id), later);
      const records = await store.listInvocations(fn.id, 10, 0);
      assert.deepEqual(records.map((r) => [r.request_id, r.attempt, r.async]).sort(), [[done.request_id, 1, true], [retried.request_id, 1, true]].sort());
      // A record that cannot commit (its function is unknown) takes its settlement down with it.
      await assert.rejects(store.recordInvocation(newInvocation('no-such-function'), 100, { delete: retried.request_id }));
      assert.deepEqual(await store.getEvent(retried.request_id), later);
    });

    test('deleting a function deletes its events; an event for an unknown function is refused', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const event = newEvent(fn.id);
      await store.enqueueEvent(event);
      await store.saveEvent({ ...newEvent(fn.id), request_id: 'missing' }); // saving a missing event changes nothing
      await store.deleteFunction(fn.id);
      assert.equal(await store.getEvent(event.request_id), undefined);
      await assert.rejects(store.enqueueEvent(newEvent('no-such-function')), /foreign key/i);
    });
  });

  describe('invocations', () => {
    test('record sets last_invoked_at and round-trips logs, error and cold_start', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const failed = newInvocation(fn.id, {
        status: 'error',
        cold_start: true,
        duration_ms: 3.251,
        invoked_at: '2024-05-01T10:00:00.123Z',
        logs: ['line 1', '', 'ünïcødé ✓', 'a\u0000b \uffff \\ "q"'],
        error: { type: 'TypeError', message: 'x is not a function', stack: 'TypeError: x\n    at f (index.js:1:1)' },
      });
      const ok = newInvocation(fn.id, { invoked_at: '2024-05-01T10:00:01.000Z', version: 2 });
      await store.recordInvocation(failed, 100);
      await store.recordInvocation(ok, 100);

      assert.deepEqual(await store.listInvocations(fn.id, 10, 0), [ok, failed]);
      assert.equal((await store.getFunction(fn.id))?.last_invoked_at, ok.invoked_at);
      assert.equal(await store.countInvocations(fn.id), 2);
    });

    test('record for an unknown function fails and stores nothing', async (t) => {
      const store = await openStore(t, backend);
      await assert.rejects(store.recordInvocation(newInvocation('missing'), 10), /foreign key/i);
      assert.equal(await store.countInvocations('missing'), 0);
    });

    test('retention trims each function to its newest records', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const other = await store.createFunction(newFunction());
      await recordMany(store, other.id, 4, 3);
      const recorded = await recordMany(store, fn.id, 10, 3);

      assert.equal(await store.countInvocations(fn.id), 3);
      assert.deepEqual(ids(await store.listInvocations(fn.id, 10, 0)), ids(recorded.slice(-3).reverse()));
      assert.equal(await store.countInvocations(other.id), 3, 'trimming one function leaves others alone');

      await store.recordInvocation(newInvocation(fn.id), 0);
      assert.equal(await store.countInvocations(fn.id), 0, 'retention 0 keeps nothing');
      await assert.rejects(store.recordInvocation(newInvocation(fn.id), -1), RangeError);
    });

    test('list is newest first with limit and offset', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      // Identical timestamps: the order must come from recording order, not the clock.
      const newestFirst: InvocationRecord[] = [];
      for (let i = 0; i < 7; i++) {
        const invocation = newInvocation(fn.id, { invoked_at: '2024-01-01T00:00:00.000Z' });
        await store.recordInvocation(invocation, 100);
        newestFirst.unshift(invocation);
      }
      assert.deepEqual(await store.listInvocations(fn.id, 3, 0), newestFirst.slice(0, 3));
      assert.deepEqual(await store.listInvocations(fn.id, 3, 3), newestFirst.slice(3, 6));
      assert.deepEqual(await store.listInvocations(fn.id, 3, 6), newestFirst.slice(6));
      assert.deepEqual(await store.listInvocations(fn.id, 3, 9), []);
    });
  });

  describe('group commit', () => {
    test('concurrent records are acknowledged only once another connection reads them, in call order', async (t) => {
      const database = await backend.fresh();
      const store = await openStore(t, backend, database);
      const fn = await store.createFunction(newFunction());
      const reader = backend.raw(t, database);
      const invocations = Array.from({ length: 50 }, () => newInvocation(fn.id));
      await Promise.all(invocations.map(async (invocation) => {
        await store.recordInvocation(invocation, 1000);
        const visible = await reader.selectFrom('invocations').select('id').where('id', '=', invocation.id).execute();
        assert.equal(visible.length, 1, `${invocation.id} acknowledged before it was committed`);
      }));
      assert.equal(await store.countInvocations(fn.id), 50);
      assert.deepEqual(ids(await store.listInvocations(fn.id, 50, 0)), ids(invocations.reverse()), 'recorded in call order');
    });

    test('a record that cannot be stored fails alone: the rest of its batch is committed', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const good = [newInvocation(fn.id), newInvocation(fn.id)];
      const event = newEvent(fn.id);
      const results = await Promise.allSettled([
        store.recordInvocation(good[0]!, 10),
        store.recordInvocation(newInvocation('deleted-meanwhile'), 10),
        store.enqueueEvent(event),
        store.recordInvocation(good[1]!, 10),
      ]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      assert.match(String((results[1] as PromiseRejectedResult).reason), /foreign key/i);
      assert.deepEqual(ids(await store.listInvocations(fn.id, 10, 0)), ids(good.reverse()));
      assert.deepEqual(await store.getEvent(event.request_id), event);
    });

    test('retention stays exact within a batch and last_invoked_at is the last record\'s', async (t) => {
      const store = await openStore(t, backend);
      const fn = await store.createFunction(newFunction());
      const other = await store.createFunction(newFunction());
      const invocations = Array.from({ length: 30 }, (_, i) => newInvocation(i % 3 === 0 ? other.id : fn.id, {
        invoked_at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
      }));
      await Promise.all(invocations.map((invocation) => store.recordInvocation(invocation, 5)));
      const mine = invocations.filter((i) => i.function_id === fn.id);
      assert.deepEqual(ids(await store.listInvocations(fn.id, 100, 0)), ids(mine.slice(-5).reverse()));
      assert.equal(await store.countInvocations(other.id), 5);
      assert.equal((await store.getFunction(fn.id))?.last_invoked_at, mine.at(-1)?.invoked_at);
      assert.equal((await store.updateFunction(fn.id, { state: 'ready' }))?.last_invoked_at, mine.at(-1)?.invoked_at);
    });

    test('close waits for the writes under way', async () => {
      const database = await backend.fresh();
      const store = await backend.open(database);
      const fn = await store.createFunction(newFunction());
      const writes = Array.from({ length: 20 }, () => store.recordInvocation(newInvocation(fn.id), 100));
      await store.close();
      await Promise.all(writes);
      const reopened = await backend.open(database);
      try {
        assert.equal(await reopened.countInvocations(fn.id), 20);
      } finally {
        await reopened.close();
      }
    });
  });

  describe('database', () => {
    test('reopening keeps everything and reruns no migration', async (t) => {
      const database = await backend.fresh();
      const first = await backend.open(database);
      const fn = await first.createFunction(newFunction());
      const invocations = await recordMany(first, fn.id, 3);
      const saved = await first.getFunction(fn.id);
      await first.close();
      const raw = backend.raw(t, database);
      const applied = () => sql<{ name: string; timestamp: string }>`SELECT name, timestamp FROM kysely_migration ORDER BY name`.execute(raw);
      const before = (await applied()).rows;

      const reopened = await backend.open(database);
      try {
        assert.deepEqual(await reopened.listFunctions(), [saved]);
        assert.deepEqual(await reopened.listInvocations(fn.id, 10, 0), invocations.reverse());
      } finally {
        await reopened.close();
      }
      assert.deepEqual(before.map((m) => m.name), MIGRATIONS);
      assert.deepEqual((await applied()).rows, before, 'the same migrations, applied when the database was new');
    });

    test('two stores on one database see each other\'s writes', async (t) => {
      const database = await backend.fresh();
      const a = await openStore(t, backend, database);
      const b = await openStore(t, backend, database);
      const fromA = await a.createFunction(newFunction());
      assert.deepEqual(await b.getFunction(fromA.id), fromA);
      const invocation = newInvocation(fromA.id);
      await b.recordInvocation(invocation, 10);
      assert.deepEqual(await a.listInvocations(fromA.id, 10, 0), [invocation]);
      assert.equal((await a.getFunction(fromA.id))?.last_invoked_at, invocation.invoked_at);
      await assert.rejects(b.createFunction(newFunction({ name: fromA.name })), NameTakenError);
      const updated = await b.updateFunction(fromA.id, { state: 'ready', version: 2 });
      assert.deepEqual(await a.getFunction(fromA.id), updated);
    });

    test('unicode, U+0000 and a 5 MB code string round-trip intact', async (t) => {
      const store = await openStore(t, backend);
      const line = '// ünïcødé 日本語 🚀 \u0000 "quotes" \\ back \uffff\uffff0 \uffff\u0000\n';
      const code = line.repeat(Math.ceil((5 * 1024 * 1024) / line.length));
      const input = newFunction({ name: 'función-🚀-名前', code, env_vars: { 'CLÉ_🔑': 'värde ✓', NUL: 'a\u0000b' } });
      const created = await store.createFunction({ ...input, description: 'a\u0000\uffff' });
      const loaded = await store.getFunctionByName(input.name);
      assert.ok(loaded);
      assert.equal(loaded.code?.length, code.length);
      assert.ok(loaded.code === code, 'code differs');
      assert.deepEqual(loaded, created);
      assert.deepEqual(loaded.env_vars, input.env_vars);
      assert.equal(loaded.description, 'a\u0000\uffff');
      const failed = await store.updateFunction(created.id, { state: 'error', error: 'ImportModuleError: bad byte \u0000 in \uffff' });
      assert.equal(failed?.error, 'ImportModuleError: bad byte \u0000 in \uffff');
      assert.deepEqual((await store.listFunctions()).map((f) => f.error), [failed?.error]);
    });
  });
});

/** Frames in the database's WAL file (they are 4 KiB pages with a 24-byte header; the file has a 32-byte one). */
function walFrames(path: string): number {
  return Math.floor((statSync(`${path}-wal`).size - 32) / (4096 + 24));
}

/**
 * Holds a read transaction open until the returned function (or the test's end) releases it: the WAL cannot
 * start over while a reader uses it, so its size counts every frame appended meanwhile.
 */
function pinWal(t: TestContext, path: string): () => void {
  const pin = new Database(path, { readonly: true });
  pin.exec('BEGIN');
  pin.prepare('SELECT count(*) FROM invocations').get();
  const release = () => {
    if (!pin.open) return;
    pin.exec('COMMIT');
    pin.close();
  };
  t.after(release);
  return release;
}

/** Reads a database file directly, bypassing the store. */
function withRaw<T>(path: string, read: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return read(db);
  } finally {
    db.close();
  }
}

describe('SQLite files', () => {
  const backend = sqliteBackend();

  test('a batch is one transaction: its pages are appended to the WAL once', async (t) => {
    const path = await backend.fresh();
    const store = await openStore(t, backend, path);
    const fn = await store.createFunction(newFunction());
    assert.equal(withRaw(path, (db) => db.pragma('journal_mode', { simple: true })), 'wal');
    const unpin = pinWal(t, path);
    const commitsBefore = walFrames(path);
    await Promise.all(Array.from({ length: 50 }, () => store.recordInvocation(newInvocation(fn.id), 1000)));
    assert.equal(await store.countInvocations(fn.id), 50);
    // One transaction appends each page it changed once: 50 commits of their own would append >= 100 frames.
    assert.ok(walFrames(path) - commitsBefore < 40, `${walFrames(path) - commitsBefore} WAL frames for one batch`);
    unpin();
  });

  test('commits reach the database file through the background checkpoint, not the committing connection', async (t) => {
    const path = await backend.fresh();
    const store = await openStore(t, backend, path);
    const fn = await store.createFunction(newFunction());
    await recordMany(store, fn.id, 20); // far fewer pages than the main connection's own checkpoint threshold
    await sleep(checkpointIntervalMs * 4);
    const copy = `${path}.copy`;
    copyFileSync(path, copy); // the database file alone, without its WAL
    assert.equal(withRaw(copy, (db) => db.prepare('SELECT count(*) FROM invocations').pluck().get()), 20);
  });

  test('a database from migration 0001 keeps each function\'s last_invoked_at', async () => {
    const path = await backend.fresh();
    await openSqliteStore(path).then((store) => store.close()); // creates the file; migrated back to 0001 below
    const sqlite = new Database(path);
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
    try {
      const down = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateTo('0001_initial');
      assert.equal(down.error, undefined);
      sqlite.prepare(`INSERT INTO functions (id, name, runtime, code, handler, env_vars, timeout_seconds, memory_mb, vcpu,
        max_concurrency, state, version, created_at, updated_at, last_invoked_at)
        VALUES ('f', 'f', 'node', 'c', 'h', '{}', 1, 128, 1, 1, 'ready', 1, 't', 't', '2024-01-01T00:00:02.000Z')`).run();
      const record = sqlite.prepare(`INSERT INTO invocations (id, function_id, request_id, status, duration_ms, invoked_at,
        version, cold_start, logs) VALUES (?, 'f', 'r', 'success', 1, ?, 1, 0, '[]')`);
      record.run('i1', '2024-01-01T00:00:01.000Z');
      record.run('i2', '2024-01-01T00:00:02.000Z');
    } finally {
      await db.destroy();
    }
    const store = await openSqliteStore(path);
    try {
      assert.equal((await store.getFunction('f'))?.last_invoked_at, '2024-01-01T00:00:02.000Z');
      assert.equal((await store.listFunctions())[0]?.last_invoked_at, '2024-01-01T00:00:02.000Z');
      await store.recordInvocation(newInvocation('f', { duration_ms: 0.125 }), 10);
      assert.deepEqual((await store.listInvocations('f', 10, 0)).map((i) => [i.id.startsWith('inv-') ? 'new' : i.id, i.duration_ms]), [['new', 0.125], ['i2', 1], ['i1', 1]]);
    } finally {
      await store.close();
    }
  });

  test('the column types of the first release and today\'s portable ones have the same affinity: text is converted alike', async () => {
    const path = await backend.fresh();
    await openSqliteStore(path).then((store) => store.close());
    const stored = withRaw(path, (db) => {
      db.prepare(`INSERT INTO functions (id, name, runtime, code, handler, env_vars, timeout_seconds, memory_mb, vcpu, max_concurrency, state,
        version, created_at, updated_at, init_ms, snapshot_bytes) VALUES ('f', 'f', 'node', '', 'h', '{}', 1, 1, 1, 1, 'ready', 1, 't', 't', '7', '9')`).run();
      db.prepare(`INSERT INTO invocations (id, function_id, request_id, status, duration_ms, invoked_at, version, cold_start, logs)
        VALUES ('i', 'f', 'r', 'success', '2', 't', 1, 0, '[]')`).run();
      db.prepare(`INSERT INTO async_events (request_id, function_id, payload, state, attempts, failures, enqueued_at, next_attempt_at, updated_at)
        VALUES ('r', 'f', '{}', 'queued', 0, 0, '1764755000123', 1, 1)`).run();
      return db.prepare(`SELECT typeof(seq) AS seq, typeof(duration_ms) AS duration_ms, typeof(init_ms) AS init_ms, typeof(snapshot_bytes) AS snapshot_bytes,
        (SELECT typeof(enqueued_at) FROM async_events) AS enqueued_at FROM invocations JOIN functions ON functions.id = function_id`).get();
    });
    // 'double precision' has REAL affinity like 'real' (text '2' is stored as 2.0), 'bigint' INTEGER like 'integer'.
    assert.deepEqual(stored, { seq: 'integer', duration_ms: 'real', init_ms: 'real', snapshot_bytes: 'integer', enqueued_at: 'integer' });
  });

  test('an in-memory store works', async () => {
    const store = await openSqliteStore(':memory:');
    try {
      const fn = await store.createFunction(newFunction());
      await store.recordInvocation(newInvocation(fn.id), 5);
      assert.equal(await store.countInvocations(fn.id), 1);
    } finally {
      await store.close();
    }
  });
});

describe('PostgreSQL only', () => {
  const server = withPostgres();

  test('hosts claiming one event at once: exactly one gets it', async (t) => {
    const url = await server().createDatabase();
    const stores = [await openPostgresStore(url), await openPostgresStore(url)];
    t.after(() => Promise.all(stores.map((store) => store.close())));
    const fn = await stores[0]!.createFunction(newFunction());
    for (let round = 0; round < 20; round++) {
      const event: AsyncEvent = {
        request_id: uid('req'), function_id: fn.id, payload: '{}', state: 'queued', attempts: 0, failures: 0,
        enqueued_at: 1000, next_attempt_at: 1000, last_error: null, dead_reason: null, updated_at: 1000,
      };
      await stores[0]!.enqueueEvent(event);
      const { payload: _payload, ...claimed } = { ...event, attempts: 1 };
      const won = await Promise.all(stores.flatMap((store, i) => [0, 1].map(() => store.claimEvent(claimed, `host-${i}`, 60_000))));
      const winners = won.map((w, i) => (w ? `host-${Math.floor(i / 2)}` : null)).filter((h) => h !== null);
      assert.equal(new Set(winners).size, 1, `round ${round}: one host won (${winners.join(', ')})`);
      assert.equal((await stores[1]!.getEvent(event.request_id))?.attempts, 1);
    }
  });

  test('a batch is one transaction: its records share one transaction id', async (t) => {
    const url = await server().createDatabase();
    const store = await openPostgresStore(url);
    t.after(() => store.close());
    const [a, b] = [await store.createFunction(newFunction()), await store.createFunction(newFunction())];
    await Promise.all(Array.from({ length: 40 }, (_, i) => store.recordInvocation(newInvocation(i % 2 === 0 ? a.id : b.id), 1000)));
    const raw = rawPostgres(t, url);
    const { rows } = await sql<{ transactions: number }>`SELECT count(DISTINCT xmin::text)::int AS transactions FROM invocations`.execute(raw);
    assert.deepEqual(rows, [{ transactions: 1 }]);
    const stats = await sql<{ transactions: number }>`SELECT count(DISTINCT xmin::text)::int AS transactions FROM invocation_stats`.execute(raw);
    assert.deepEqual(stats.rows, [{ transactions: 1 }], 'the four buckets were written by the same transaction');
  });

  test('hosts starting at once on an empty database migrate it once', async (t) => {
    const url = await server().createDatabase();
    const stores = await Promise.all([openPostgresStore(url), openPostgresStore(url), openPostgresStore(url)]);
    try {
      const fn = await stores[0].createFunction(newFunction());
      assert.deepEqual(await stores[2].getFunction(fn.id), fn);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
    const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(rawPostgres(t, url));
    assert.deepEqual(rows.map((r) => r.name), MIGRATIONS);
  });

  test('connections the server ends are replaced: the loss is logged, the next writes and reads work', async (t) => {
    const url = await server().createDatabase();
    const logged: string[] = [];
    const store = await openPostgresStore(url, { log: (message) => logged.push(message) });
    t.after(() => store.close());
    const fn = await store.createFunction(newFunction());
    await recordMany(store, fn.id, 3);
    const ended = await sql<{ n: number }>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()`.execute(rawPostgres(t, url));
    assert.ok((ended.rows[0]?.n ?? 0) >= 1, 'the store had a connection open');
    await eventually('the loss to be noticed', async () => (logged.length > 0 ? true : undefined), 5000);
    assert.match(logged[0] ?? '', /^PostgreSQL: an idle connection failed: terminating connection due to administrator command/);
    await recordMany(store, fn.id, 2);
    assert.equal(await store.countInvocations(fn.id), 5);
  });

  test('a database that cannot be used fails the open with where and why, no password', async () => {
    await assert.rejects(openPostgresStore(server().url('no_such_database')), (error: Error) => {
      assert.equal(error.message, `cannot use PostgreSQL at ${server().dir} (database no_such_database): database "no_such_database" does not exist`);
      return true;
    });
    const nobodyThere = 'postgresql://fnvm:s3cret@127.0.0.1:1/fnvm';
    await assert.rejects(openPostgresStore(nobodyThere), (error: Error) => {
      assert.equal(error.message, 'cannot use PostgreSQL at 127.0.0.1:1 (database fnvm): connect ECONNREFUSED 127.0.0.1:1');
      assert.doesNotMatch(error.message, /s3cret/);
      return true;
    });
    await assert.rejects(openPostgresStore('mysql://localhost/fnvm'), /postgres:\/\/ or postgresql:\/\//);
  });
});

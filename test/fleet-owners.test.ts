// The owner cache in front of the registry's lookup: a remembered owner is used until its lease (as looked up) runs
// out, forgotten when a change shows another owner, a rename or a deletion, or when forwarding to it failed; a
// lookup that raced a change does not store its answer; placement (no owner) is never remembered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OwnerCache } from '../src/fleet/owners.js';
import type { Located } from '../src/fleet/registry.js';
import type { FunctionRecord } from '../src/store/types.js';

function setup(answer: (ref: string) => Located | undefined) {
  let clock = 1000;
  const lookups: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  const cache = new OwnerCache({ now: () => clock, lookup: async (ref) => { lookups.push(ref); await gate; return answer(ref); } });
  return { cache, lookups, tick: (ms: number) => (clock += ms), hold: (until: Promise<void>) => (gate = until) };
}
const a = { id: 'a', url: 'http://a' };
const b = { id: 'b', url: 'http://b' };
/** A change as the feed delivers it: only the fields the cache reads matter. */
function item(fields: Partial<FunctionRecord>): { item: FunctionRecord } {
  const record: Pick<FunctionRecord, 'id' | 'name' | 'host_id'> = { id: 'f1', name: 'one', host_id: 'a', ...fields };
  return { item: Object.assign(Object.create(null) as FunctionRecord, record) };
}

test('an owner is looked up once, then remembered until its lease as looked up runs out', async () => {
  const { cache, lookups, tick } = setup(() => ({ functionId: 'f1', owner: a, leaseLeftMs: 4000 }));
  assert.equal(cache.remembered('one'), undefined, 'nothing is remembered before a lookup');
  assert.deepEqual(await Promise.all([cache.locate('one'), cache.locate('one')]), [a, a]);
  assert.deepEqual(await cache.locate('one'), a);
  assert.deepEqual(lookups, ['one'], 'concurrent and later requests share one lookup');
  tick(3999);
  assert.deepEqual(cache.remembered('one'), a, 'what the front door forwards by, without a lookup');
  await cache.locate('one');
  assert.equal(lookups.length, 1);
  tick(1);
  assert.equal(cache.remembered('one'), undefined, 'not past the lease it saw');
  await cache.locate('one');
  assert.equal(lookups.length, 2, 'looked up again once the lease it saw has run out');
});

test('a change that keeps the owner keeps the entry; another owner, a rename or a deletion drops it', async () => {
  let owner = a;
  const { cache, lookups } = setup(() => ({ functionId: 'f1', owner, leaseLeftMs: 4000 }));
  await cache.locate('one');
  await cache.locate('f1');
  cache.changed(item({}));
  await cache.locate('one');
  assert.equal(lookups.length, 2, 'last_invoked_at announcements keep the owner');
  owner = b;
  cache.changed(item({ host_id: 'b' }));
  assert.deepEqual(await cache.locate('one'), b);
  assert.deepEqual(await cache.locate('f1'), b);
  assert.equal(lookups.length, 4);
  cache.changed(item({ host_id: 'b', name: 'renamed' }));
  await cache.locate('f1');
  assert.equal(lookups.length, 4, 'the id still names it');
  await cache.locate('one');
  assert.equal(lookups.length, 5, 'the old name is looked up again');
  cache.changed({ deleted: 'f1' });
  await cache.locate('f1');
  assert.equal(lookups.length, 6);
});

test('a failed forward forgets that owner; placement is not remembered; unknown functions are undefined', async () => {
  let located: Located | undefined = { functionId: 'f1', owner: a, leaseLeftMs: 4000 };
  const { cache, lookups } = setup(() => located);
  await cache.locate('f1');
  cache.failed('a');
  assert.equal(cache.remembered('f1'), undefined, 'forgotten at once: the front door no longer forwards there');
  located = { functionId: 'f1', owner: null, leaseLeftMs: 0 };
  assert.equal(await cache.locate('f1'), null);
  assert.equal(await cache.locate('f1'), null);
  assert.equal(lookups.length, 3, 'no owner: every request asks again');
  located = undefined;
  assert.equal(await cache.locate('nope'), undefined);
});

test('a lookup that a change overtook answers its request but is not remembered', async () => {
  const { cache, lookups, hold } = setup(() => ({ functionId: 'f1', owner: a, leaseLeftMs: 4000 }));
  let release = () => {};
  void hold(new Promise<void>((resolve) => (release = resolve)));
  const pending = cache.locate('one');
  cache.changed(item({ host_id: 'b' }));
  release();
  assert.deepEqual(await pending, a);
  await cache.locate('one');
  assert.equal(lookups.length, 2);
});

// The server on PostgreSQL (FNVM_DATABASE_URL) over real HTTP and real microVMs: the documented workflow, an
// asynchronous event, statistics, and a restart on the same database; and a database that cannot be used
// stopping startup before anything else starts.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startServer } from '../src/app.js';
import { configFromEnv } from '../src/config.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { eventually } from './support/eventually.js';
import { startTestServer, waitForState } from './support/server.js';
import { rawPostgres, withPostgres } from './support/stores.js';

const code = 'async function handler(event) { console.log("got", event.n); return { doubled: event.n * 2 }; }';
// On PostgreSQL a server is a host of a fleet (here, of one), which needs the cluster secret.
process.env.FNVM_CLUSTER_SECRET = 'a-test-cluster-secret-0123456789';

after(() => assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the servers'));

describe('FNVM_DATABASE_URL', () => {
  const postgres = withPostgres();

  test('a URL that is not PostgreSQL\'s, or a server that cannot be reached, stops startup with why', async () => {
    const saved = process.env.FNVM_DATABASE_URL;
    try {
      process.env.FNVM_DATABASE_URL = 'mysql://fnvm:s3cret@db/fnvm';
      assert.throws(() => configFromEnv(), { message: 'FNVM_DATABASE_URL must be a postgres:// or postgresql:// URL (unset: SQLite in FNVM_DATA_DIR)' });
      process.env.FNVM_DATABASE_URL = 'postgresql://fnvm:s3cret@db.example/fnvm?sslmode=require';
      assert.equal(configFromEnv().databaseUrl, 'postgresql://fnvm:s3cret@db.example/fnvm?sslmode=require');
      delete process.env.FNVM_DATABASE_URL;
      assert.equal(configFromEnv().databaseUrl, undefined, 'unset: SQLite');
    } finally {
      if (saved === undefined) delete process.env.FNVM_DATABASE_URL;
      else process.env.FNVM_DATABASE_URL = saved;
    }
    const started = Date.now();
    await assert.rejects(startServer({ ...configFromEnv(), port: 0, databaseUrl: 'postgresql://fnvm:s3cret@127.0.0.1:1/fnvm' }, () => {}), {
      message: 'cannot use PostgreSQL at 127.0.0.1:1 (database fnvm): connect ECONNREFUSED 127.0.0.1:1',
    });
    assert.ok(Date.now() - started < 5000, 'refused before images and VMs');
    // A fleet without its secret does not start.
    await assert.rejects(startServer({ ...configFromEnv(), port: 0, databaseUrl: 'postgresql://127.0.0.1:1/fnvm', fleet: { ...configFromEnv().fleet, clusterSecret: undefined } }, () => {}), {
      message: /a fleet needs FNVM_CLUSTER_SECRET/,
    });
    assert.equal(liveProcessCount(), 0);
  });

  test('the server keeps functions, records, async events and statistics in PostgreSQL, across a restart', async (t) => {
    const databaseUrl = await postgres().createDatabase();
    let fnvm = await startTestServer({ databaseUrl });
    try {
      const created = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'doubler', runtime: 'node', handler: 'handler', code } });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const id: string = created.body.id;
      assert.equal((await waitForState(fnvm, id)).state, 'ready');
      const invoked = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: { n: 21 } } });
      assert.equal(invoked.status, 200);
      assert.deepEqual([invoked.body.status, invoked.body.response, invoked.body.logs], ['success', { doubled: 42 }, ['got 21']]);
      const queued = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: { n: 5 } }, headers: { prefer: 'respond-async' } });
      assert.equal(queued.status, 202);
      await eventually('the event to run', async () => ((await fnvm.api(`/v1/functions/${id}/logs`)).body.total === 2 ? true : undefined));

      // What a user reads back, and what the database holds.
      const logs = await fnvm.api(`/v1/functions/${id}/logs?limit=10`);
      assert.deepEqual(logs.body.items.map((r: any) => [r.request_id, r.async, r.status]), [[queued.body.request_id, true, 'success'], [invoked.body.request_id, false, 'success']]);
      assert.deepEqual((await fnvm.api(`/v1/functions/${id}/queue`)).body, { queued: 0, running: 0, dead_letters: 0, oldest_queued_at: null });
      const metrics = await fnvm.api(`/v1/functions/${id}/metrics?since=15m`);
      assert.equal(metrics.body.total.invocations, 2);
      const rows = await rawPostgres(t, databaseUrl).selectFrom('invocations').select(['request_id', 'logs']).orderBy('seq').execute();
      assert.deepEqual(rows, [{ request_id: invoked.body.request_id, logs: '["got 21"]' }, { request_id: queued.body.request_id, logs: '["got 5"]' }]);

      const before = (await fnvm.api(`/v1/functions/${id}`)).body.item;
      await fnvm.stop({ keepData: true });
      fnvm = await startTestServer({ databaseUrl, dataDir: fnvm.dataDir });
      // The stored state says ready at once; the restarted server then deploys it onto a VM of its own.
      // Ready on a VM of its own, or asleep (ready without one: the invoke below starts one); a deploy under a
      // loaded machine may take long.
      const item = await eventually('the function redeployed', async () => {
        const { body } = await fnvm.api(`/v1/functions/${id}`);
        return body.item?.state === 'ready' && body.item.vm_id !== before.vm_id ? body.item : undefined;
      }, 120_000);
      assert.deepEqual([item.name, item.version, item.last_invoked_at], ['doubler', 1, logs.body.items[0].invoked_at]);
      const again = await fnvm.api('/v1/functions/doubler/invoke', { method: 'POST', body: { event: { n: 1 } } });
      assert.deepEqual([again.status, again.body.response], [200, { doubled: 2 }], JSON.stringify(again.body));
      assert.equal((await fnvm.api(`/v1/functions/${id}/logs`)).body.total, 3);
      assert.equal((await fnvm.api(`/v1/functions/${id}`, { method: 'DELETE' })).status, 200);
      assert.equal((await rawPostgres(t, databaseUrl).selectFrom('functions').selectAll().execute()).length, 0);
    } finally {
      await fnvm.stop();
    }
  });
});

// Live logs: GET /v1/functions/{id}/logs?follow=true streams each invocation record once it is committed,
// after a backlog, with nothing lost or doubled around the switch; `fnvm logs --follow` prints them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { repoRoot } from '../src/paths.js';
import { follow, until, type Sse } from './support/sse.js';
import { deployReady, startTestServer, type TestServer } from './support/server.js';

const token = 'live-logs-token';
const code = 'exports.handler = async (event) => { console.log("seen", event.n); if (event.fail) throw new Error("asked to"); return event.n; };';

describe('following a function\'s logs', () => {
  let fnvm: TestServer;
  const auth = { authorization: `Bearer ${token}` };
  const streams: Sse[] = [];
  const invoke = async (id: string, event: unknown) => {
    const answer = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event }, headers: auth });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body;
  };
  const logs = async (id: string, limit: number) => (await fnvm.api(`/v1/functions/${id}/logs?limit=${limit}`, { headers: auth })).body.items;
  const records = (sse: Sse) => sse.events.filter((e) => e.event === 'invocation').map((e) => JSON.parse(e.data));
  const open = async (path: string) => {
    const sse = await follow(`${fnvm.url}${path}${path.includes('?') ? '&' : '?'}access_token=${token}`);
    streams.push(sse);
    return sse;
  };

  before(async () => {
    fnvm = await startTestServer({ apiToken: token }, { sendToken: true });
  });
  after(async () => {
    for (const sse of streams) sse.abort();
    await fnvm.stop();
  });

  test('the backlog first, oldest first, then each new record exactly as GET /logs has it; deletion ends it', async () => {
    const { id } = await deployReady(fnvm, { name: 'followed', runtime: 'node', code });
    for (let n = 1; n <= 3; n++) await invoke(id, { n });
    const sse = await open(`/v1/functions/${id}/logs?follow=true&limit=2`);
    await until('the backlog', () => records(sse).length === 2, 10_000);
    assert.deepEqual(records(sse), (await logs(id, 2)).reverse(), 'the backlog is the newest 2 records, oldest first');

    const answers = [await invoke(id, { n: 4 }), await invoke(id, { n: 5, fail: true })];
    await until('the new records', () => records(sse).length === 4, 10_000);
    const live = records(sse).slice(2);
    assert.deepEqual(live.map((r) => r.request_id), answers.map((a) => a.request_id));
    assert.deepEqual(live.map((r) => [r.status, r.logs]), [['success', ['seen 4']], ['error', ['seen 5']]]);
    assert.equal(live[1].error.message, 'asked to');
    assert.deepEqual(live, (await logs(id, 2)).reverse(), 'streamed records equal the stored ones, field for field');

    const bare = await open(`/v1/functions/followed/logs?follow=true`); // by name; no backlog by default
    await invoke(id, { n: 6 });
    await until('the record on both streams', () => records(sse).length === 5 && records(bare).length === 1, 10_000);
    assert.equal(records(bare)[0].request_id, records(sse)[4].request_id);

    assert.equal((await fnvm.api(`/v1/functions/${id}`, { method: 'DELETE', headers: auth })).status, 200);
    await sse.ended; // a clean end, after the deleted event
    await bare.ended;
    assert.deepEqual(sse.events.at(-1), { event: 'deleted', data: JSON.stringify({ deleted: id }) });
  });

  test('records committed while the backlog is read are sent once, none lost', async () => {
    const { id } = await deployReady(fnvm, { name: 'busy', runtime: 'node', code, max_concurrency: 100 });
    const burst = (from: number) => Promise.all(Array.from({ length: 20 }, (_, i) => invoke(id, { n: from + i })));
    const before = burst(0);
    const sse = await open(`/v1/functions/${id}/logs?follow=true&limit=1000`);
    const after = burst(100);
    const requestIds = [...(await before), ...(await after)].map((a) => a.request_id);
    await until('every record', () => records(sse).length >= 40, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // any duplicate would arrive by now
    const seen = records(sse).map((r) => r.request_id);
    assert.equal(seen.length, 40, 'no record twice');
    assert.deepEqual([...seen].sort(), [...requestIds].sort(), 'every invocation, each once');
  });

  test('refusals: a bad follow or limit is a 400, an unknown function a 404, no token a 401', async () => {
    const bad = await fnvm.api('/v1/functions/busy/logs?follow=yes', { headers: auth });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /follow must be true or false/);
    const limit = await fnvm.api('/v1/functions/busy/logs?follow=true&limit=1001', { headers: auth });
    assert.equal(limit.status, 400);
    assert.match(limit.body.error, /limit must be an integer from 0 to 1000/);
    assert.equal((await fnvm.api('/v1/functions/nope/logs?follow=true', { headers: auth })).status, 404);
    assert.equal((await fetch(`${fnvm.url}/v1/functions/busy/logs?follow=true`)).status, 401);
    // The query token is for streams only: a page of logs needs the header.
    assert.equal((await fetch(`${fnvm.url}/v1/functions/busy/logs?access_token=${token}`)).status, 401);
  });

  test('fnvm logs --follow prints the backlog and then each invocation as it happens', async () => {
    const { id } = await deployReady(fnvm, { name: 'tailed', runtime: 'node', code });
    const first = await invoke(id, { n: 1 });
    const child = spawn(process.execPath, [join(repoRoot, 'dist/src/cli.js'), 'logs', 'tailed', '--follow', '--limit', '1'], {
      env: { ...process.env, FNVM_URL: fnvm.url, FNVM_API_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
    try {
      await until('the backlog line', () => stdout.includes(first.request_id), 15_000);
      const second = await invoke(id, { n: 2, fail: true });
      await until('the new invocation', () => stdout.includes(second.request_id), 15_000);
      const lines = stdout.trimEnd().split('\n');
      assert.match(lines[0]!, new RegExp(`^\\S+Z {2}${first.request_id} {2}success {2}[\\d.]+ ms$`));
      assert.equal(lines[1], '    seen 1');
      assert.match(lines[2]!, new RegExp(`^\\S+Z {2}${second.request_id} {2}error {2}[\\d.]+ ms$`));
      assert.deepEqual(lines.slice(3), ['    seen 2', '    Error: asked to']);
      assert.equal((await fnvm.api(`/v1/functions/${id}`, { method: 'DELETE', headers: auth })).status, 200);
      assert.equal(await exited, 0, `exit code; stderr: ${stderr}`);
      assert.match(stderr, /function tailed was deleted/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

// GET /metrics (Prometheus, prom-client) against what really happened: invocations made and answered, 429s
// received, VMs replaced for each cause, live QEMU processes; a deleted or renamed function's series go.
// And the structured log: an invocation line at debug, no payload, secret or token at any level.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { repoRoot } from '../src/paths.js';
import { livePids } from '../src/vm/processes.js';
import { startCli, type CliServer } from './support/cli.js';
import { eventually } from './support/eventually.js';
import { parseExposition, type Exposition } from './support/prometheus.js';
import { deployReady, startTestServer, waitForState, type TestServer } from './support/server.js';

const token = `metrics-${randomBytes(8).toString('hex')}`;
const auth = { authorization: `Bearer ${token}` };
const appCode = `exports.handler = async (e) => {
  if (e.sleep) await new Promise((resolve) => setTimeout(resolve, e.sleep));
  if (e.fail) throw new Error('asked to fail');
  if (e.die) process.exit(3);
  return 'ok';
};`;

describe('GET /metrics', () => {
  let fnvm: TestServer;
  const scrape = async (): Promise<Exposition> => {
    const response = await fetch(`${fnvm.url}/metrics`, { headers: auth });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parseExposition(await response.text());
  };
  /** Every invoke's answer and how long the client waited for it. */
  const answers: Array<{ fn: string; status: number; body: any; clientMs: number }> = [];
  const invoke = async (fn: string, event: unknown) => {
    const started = performance.now();
    const answer = await fnvm.api(`/v1/functions/${fn}/invoke`, { method: 'POST', body: { event }, headers: auth });
    answers.push({ fn, status: answer.status, body: answer.body, clientMs: performance.now() - started });
    return answer;
  };
  const records = async (fn: string) => (await fnvm.api(`/v1/functions/${fn}/logs?limit=1000`, { headers: auth })).body.items;
  const deployTimes = new Map<string, number>();
  const deploy = async (body: Record<string, unknown>, expect: 'ready' | 'error') => {
    const started = performance.now();
    const created = await fnvm.api('/v1/functions', { method: 'POST', body, headers: auth });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const item = await waitForState(fnvm, created.body.id);
    deployTimes.set(String(body.name), performance.now() - started);
    assert.equal(item.state, expect, item.error);
    return item;
  };

  before(async () => {
    fnvm = await startTestServer({ apiToken: token }, { sendToken: true });
  });
  after(async () => {
    await fnvm.stop();
  });

  test('needs the API token; a histogram and counters of the right types', async () => {
    assert.equal((await fetch(`${fnvm.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${fnvm.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const m = await scrape();
    assert.equal(m.types.get('fnvm_invocations_total'), 'counter');
    assert.equal(m.types.get('fnvm_invocation_duration_seconds'), 'histogram');
    assert.equal(m.types.get('fnvm_vms'), 'gauge');
    const health = (await fnvm.api('/v1/health', { headers: auth })).body;
    assert.equal(m.value('fnvm_accelerator_info', { accelerator: health.accelerator, driver: health.vm_driver }), 1);
    const rss = m.value('fnvm_process_resident_memory_bytes') ?? 0;
    const ours = process.memoryUsage().rss;
    assert.ok(rss > ours / 2 && rss < ours * 2, `process metrics are this process's: ${rss} vs rss ${ours}`);
  });

  test('per function: invocations by status, host durations, cold starts, 429s, in flight, deploys', async () => {
    await deploy({ name: 'm-app', runtime: 'node', code: appCode, timeout_seconds: 2, max_concurrency: 1 }, 'ready');
    await deploy({ name: 'm-broken', runtime: 'node', code: 'exports.handler = ;' }, 'error');
    for (let i = 0; i < 5; i++) await invoke('m-app', {});
    for (let i = 0; i < 2; i++) await invoke('m-app', { fail: true });
    await invoke('m-app', { sleep: 4000 }); // over its 2 s timeout: recorded as a timeout, its VM replaced

    // Four at once on max_concurrency 1: one runs (and is in flight while we scrape), the others get 429.
    const burst = Promise.all(Array.from({ length: 4 }, () => invoke('m-app', { sleep: 1500 })));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const during = await scrape();
    await burst;
    assert.equal(during.value('fnvm_invocations_in_flight', { function: 'm-app' }), 1, 'the one running is in flight');
    const m = await scrape();
    assert.equal(m.value('fnvm_invocations_in_flight', { function: 'm-app' }), 0);

    const mine = answers.filter((a) => a.fn === 'm-app');
    const answered = mine.filter((a) => a.status === 200);
    const tally = (status: string) => answered.filter((a) => a.body.status === status).length;
    assert.equal(mine.filter((a) => a.status === 429).length >= 2, true, 'the burst was throttled');
    assert.equal(m.value('fnvm_throttles_total', { function: 'm-app' }), mine.filter((a) => a.status === 429).length);
    for (const status of ['success', 'error', 'timeout']) {
      assert.equal(m.value('fnvm_invocations_total', { function: 'm-app', status }) ?? 0, tally(status), status);
    }
    assert.equal(tally('timeout'), 1);

    const stored = await records('m-app');
    assert.equal(stored.length, answered.length);
    assert.equal(m.value('fnvm_cold_starts_total', { function: 'm-app' }) ?? 0, stored.filter((r: any) => r.cold_start).length);
    // The host's duration lies between the guest's (the record) and the client's (HTTP included).
    const count = m.value('fnvm_invocation_duration_seconds_count', { function: 'm-app' });
    const sum = m.value('fnvm_invocation_duration_seconds_sum', { function: 'm-app' }) ?? NaN;
    assert.equal(count, answered.length);
    const guestSum = stored.reduce((s: number, r: any) => s + r.duration_ms, 0) / 1000;
    const clientSum = answered.reduce((s, a) => s + a.clientMs, 0) / 1000;
    assert.ok(sum >= guestSum * 0.99 && sum <= clientSum, `host sum ${sum} s within guest ${guestSum} s and client ${clientSum} s`);
    for (const bucket of m.select('fnvm_invocation_duration_seconds_bucket', { function: 'm-app' })) {
      const le = bucket.labels.le === '+Inf' ? Infinity : Number(bucket.labels.le);
      const byClient = answered.filter((a) => a.clientMs / 1000 <= le).length;
      const byGuest = stored.filter((r: any) => (r.duration_ms / 1000) * 0.99 <= le).length;
      assert.ok(bucket.value >= byClient && bucket.value <= byGuest, `le=${le}: ${bucket.value} within [${byClient}, ${byGuest}]`);
    }

    for (const [name, outcome] of [['m-app', 'ready'], ['m-broken', 'error']] as const) {
      assert.equal(m.value('fnvm_deploy_duration_seconds_count', { function: name, outcome }), 1, `${name} deployed once`);
      const seconds = m.value('fnvm_deploy_duration_seconds_sum', { function: name, outcome }) ?? NaN;
      assert.ok(seconds > 0 && seconds * 1000 <= (deployTimes.get(name) ?? 0), `${name}: ${seconds} s, the client waited ${deployTimes.get(name)} ms`);
    }
    assert.equal(m.value('fnvm_functions', { state: 'ready' }), 1);
    assert.equal(m.value('fnvm_functions', { state: 'error' }), 1);
    assert.equal(m.value('fnvm_vm_replacements_total', { cause: 'timeout' }), 1);
  });

  test('VM replacements by cause: a crash and an out-of-memory', async () => {
    await deployReady(fnvm, { name: 'm-crash', runtime: 'node', code: appCode });
    await deployReady(fnvm, {
      name: 'm-hog', runtime: 'node', memory_mb: 128,
      code: 'const keep = []; exports.handler = () => { for (;;) keep.push(new Array(1e6).fill(Math.random())); };',
    });
    const before = await scrape();
    assert.equal((await invoke('m-crash', { die: true })).body.error.type, 'VMCrashed');
    assert.equal((await invoke('m-hog', {})).body.error.type, 'OutOfMemory');
    const m = await scrape();
    const grew = (cause: string) => (m.value('fnvm_vm_replacements_total', { cause }) ?? 0) - (before.value('fnvm_vm_replacements_total', { cause }) ?? 0);
    assert.deepEqual(['timeout', 'oom', 'crash', 'hang', 'protocol'].map(grew), [0, 1, 1, 0, 0]);
  });

  test('host: VMs by runtime and state, their memory, and the warm pool equal what is running', async () => {
    await fnvm.server.pool.settled();
    let m: Exposition | undefined;
    let pids: number[] = [];
    for (let attempt = 0; attempt < 20; attempt++) { // a replacement or refill may start between two reads
      pids = livePids();
      m = await scrape();
      if (livePids().join() === pids.join()) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.ok(m);
    const vms = m.select('fnvm_vms');
    assert.equal(vms.reduce((s, v) => s + v.value, 0), pids.length, 'one VM per live QEMU process');
    assert.ok(vms.every((v) => ['node', 'python'].includes(v.labels.runtime!) && ['starting', 'running', 'paused', 'failed'].includes(v.labels.state!)));
    const resident = m.select('fnvm_guest_memory_bytes', { kind: 'resident' }).reduce((s, v) => s + v.value, 0);
    const measured = pids.reduce((s, pid) => s + Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024, 0);
    assert.ok(Math.abs(resident - measured) <= measured * 0.1, `resident ${resident} vs ${measured} read from /proc`);
    const sizes = fnvm.server.pool.sizes();
    for (const runtime of ['node', 'python']) {
      const idle = Object.entries(sizes).filter(([key]) => key.startsWith(`${runtime}-`)).reduce((s, [, n]) => s + n, 0);
      assert.equal(m.value('fnvm_warm_pool_vms', { runtime }), idle, `${runtime} warm pool`);
    }
  });

  test('docs/grafana-dashboard.json queries only metrics and labels this server exports', async () => {
    const dashboard = JSON.parse(readFileSync(join(repoRoot, 'docs/grafana-dashboard.json'), 'utf8'));
    // One asynchronous event, run to its end, so the async series have samples to read labels from.
    const queued = await fnvm.api('/v1/functions/m-app/invoke', { method: 'POST', body: { event: {} }, headers: { ...auth, prefer: 'respond-async' } });
    assert.equal(queued.status, 202);
    await eventually('the event to run', async () => ((await fnvm.api('/v1/functions/m-app/queue', { headers: auth })).body.queued === 0 ? true : undefined));
    const m = await scrape();
    const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '');
    const exported = new Set([...m.types.keys()]);
    const labelsOf = (name: string) => new Set(m.select(name).flatMap((s) => Object.keys(s.labels)));
    const exprs: string[] = dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => t.expr));
    assert.ok(exprs.length >= 15, `${exprs.length} queries`);
    const unseen = new Set<string>(); // no sample yet to read its labels from
    for (const expr of exprs) {
      const names = [...expr.matchAll(/\b(fnvm_[a-z0-9_]+)/g)].map((x) => x[1]!);
      assert.ok(names.length > 0, `${expr} reads an fnvm metric`);
      for (const name of names) {
        assert.ok(exported.has(family(name)), `${name} (in ${expr}) is exported`);
        const known = labelsOf(name);
        if (m.select(name).length === 0) {
          unseen.add(name);
          continue;
        }
        const used = [...expr.matchAll(/by \(([^)]*)\)/g)].flatMap((x) => x[1]!.split(',').map((l) => l.trim()));
        for (const label of [...used, ...[...expr.matchAll(new RegExp(`${name}\\{([^}]*)\\}`, 'g'))].flatMap((x) => [...x[1]!.matchAll(/(\w+)\s*[!=]~?/g)].map((l) => l[1]!))]) {
          if (label === 'le' && !name.endsWith('_bucket')) continue;
          assert.ok(known.has(label), `${name} has a "${label}" label (in ${expr}); it has ${[...known].join(', ')}`);
        }
      }
    }
    assert.deepEqual([...unseen].filter((name) => name !== 'fnvm_cold_starts_total'), [], 'every other series has samples by now');
    const variable = dashboard.templating.list.find((v: any) => v.name === 'function');
    assert.match(variable.query.query, /label_values\(fnvm_invocations_total, function\)/);
  });

  test('a renamed function\'s series move to its new name; a deleted one\'s go', async () => {
    const renamed = await fnvm.api('/v1/functions/m-crash', { method: 'PUT', body: { name: 'm-crash2' }, headers: auth });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.equal((await invoke('m-crash2', {})).body.status, 'success');
    assert.equal((await fnvm.api('/v1/functions/m-app', { method: 'DELETE', headers: auth })).status, 200);
    const m = await scrape();
    const of = (name: string) => m.samples.filter((s) => s.labels.function === name);
    assert.deepEqual(of('m-app'), [], 'no series of the deleted function');
    assert.deepEqual(of('m-crash'), [], 'no series under the old name');
    assert.equal(m.value('fnvm_invocations_total', { function: 'm-crash2', status: 'success' }), 1);
  });
});

describe('structured logs', () => {
  const secret = `secret-${randomBytes(8).toString('hex')}`;
  const payload = `payload-${randomBytes(8).toString('hex')}`;
  const servers: CliServer[] = [];
  const dirs: string[] = [];
  after(() => {
    for (const server of servers) if (server.process.exitCode === null) server.process.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** A real server at `level`: one function with a secret in its environment, invoked with a marked event. */
  async function run(level: 'debug' | 'info') {
    const dir = mkdtempSync(join(tmpdir(), 'fnvm-logs-'));
    dirs.push(dir);
    const server = await startCli({ FNVM_DATA_DIR: dir, FNVM_API_TOKEN: token, FNVM_LOG_LEVEL: level, FNVM_POOL_SIZE: '0' });
    servers.push(server);
    const call = async (path: string, method = 'GET', body?: unknown) => {
      const response = await fetch(server.url + path, { method, headers: { ...auth, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return response.json();
    };
    const code = 'exports.handler = async (e) => { console.log("got", JSON.stringify(e)); return { echoed: e.mark, env: process.env.SECRET }; };';
    const { id } = await call('/v1/functions', 'POST', { name: 'logged', runtime: 'node', code, env_vars: { SECRET: secret } });
    for (let state = ''; state !== 'ready';) {
      state = (await call(`/v1/functions/${id}`)).item.state;
      assert.notEqual(state, 'error');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const answer = await call(`/v1/functions/${id}/invoke`, 'POST', { event: { mark: payload } });
    assert.equal(answer.response.echoed, payload);
    const [record] = (await call(`/v1/functions/${id}/logs?limit=1`)).items;
    server.process.kill('SIGTERM');
    assert.equal(await server.exited, 0);
    const lines = server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const raw = server.output();
    for (const [what, value] of [['the event', payload], ['the environment', secret], ['the token', token]]) {
      assert.ok(!raw.includes(value!), `${what} appears in no ${level} log line`);
    }
    return { lines, answer, record, id };
  }

  test('at debug: one line per invocation with request id, function, status and duration', async () => {
    const { lines, answer, record, id } = await run('debug');
    const invocations = lines.filter((l) => l.msg === 'invocation');
    assert.equal(invocations.length, 1);
    const [line] = invocations;
    assert.equal(line.level, 20);
    assert.equal(line.request_id, answer.request_id);
    assert.equal(line.function, 'logged');
    assert.equal(line.function_id, id);
    assert.equal(line.status, 'success');
    assert.equal(line.duration_ms, record.duration_ms);
    assert.ok(line.host_ms >= record.duration_ms * 0.99, `host ${line.host_ms} ms >= guest ${record.duration_ms} ms`);
  });

  test('at info: no invocation lines', async () => {
    const { lines } = await run('info');
    assert.ok(lines.some((l) => l.msg === 'incoming request'), 'the log was captured');
    assert.deepEqual(lines.filter((l) => l.msg === 'invocation'), []);
  });
});

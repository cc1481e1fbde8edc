// Event streams under hostile conditions: a client that never reads, shutdown with tabs open, tokens in URLs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { maxBacklogBytes } from '../src/api/sse.js';
import { startCli, type CliServer } from './support/cli.js';
import { follow, until, type Sse } from './support/sse.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

/**
 * Opens `path` over raw TCP and stops reading once the response has started. Node cannot shrink SO_RCVBUF,
 * but a socket that is not read keeps its initial receive window (Linux grows it only as the application
 * reads), so the server's writes back up after a few MB.
 */
async function stall(url: string, path: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
  await new Promise<void>((resolve) => socket.once('data', (chunk: Buffer) => {
    assert.match(chunk.toString(), /^HTTP\/1\.1 200/);
    resolve();
  }));
  socket.pause();
  socket.on('error', () => {}); // the server resetting it is the point
  return socket;
}

describe('a client that stops reading', () => {
  let fnvm: TestServer;
  after(async () => {
    await fnvm?.stop();
  });

  test('is dropped after a bounded backlog, while a reading client gets every event', async (t) => {
    fnvm = await startTestServer({ poolSize: 0 });
    // ~256 KiB per event: every change carries the whole item, code included.
    const code = `// ${'x'.repeat(256 * 1024)}\nexports.handler = async () => 1;`;
    const created = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'big', runtime: 'node', code } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body.id as string;
    assert.equal((await waitForState(fnvm, id)).state, 'ready');

    // The server's end of each connection, by the client's port: what it really has queued for that client.
    const serverSide = new Map<number, Socket>();
    fnvm.server.app.server.on('connection', (socket: Socket) => serverSide.set(socket.remotePort ?? -1, socket));
    const reader = await follow(`${fnvm.url}/v1/events`);
    const stalled = await stall(fnvm.url, '/v1/events');
    const queued = serverSide.get(stalled.localPort ?? -1);
    assert.ok(queued, 'found the server side of the stalled connection');
    const stalledClosed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));

    const puts = 100; // ~25 MB of events: far beyond kernel socket buffers plus the backlog bound
    let eventBytes = 0;
    let maxQueued = 0;
    let droppedAfter: number | undefined;
    for (let n = 1; n <= puts; n++) {
      const updated = await fnvm.api(`/v1/functions/${id}`, { method: 'PUT', body: { timeout_seconds: 10 + (n % 2) } });
      assert.equal(updated.status, 200, JSON.stringify(updated.body));
      eventBytes = Math.max(eventBytes, JSON.stringify({ item: updated.body.item }).length);
      if (queued.destroyed) droppedAfter ??= n;
      else maxQueued = Math.max(maxQueued, queued.writableLength);
    }
    assert.ok(droppedAfter !== undefined, `the stalled client was dropped (still holds ${queued.writableLength} bytes queued)`);
    assert.ok(maxQueued <= maxBacklogBytes + eventBytes + 1024,
      `at most the bound plus one event was queued for it: ${maxQueued} > ${maxBacklogBytes} + ${eventBytes}`);
    assert.ok(droppedAfter < puts, `dropped before the changes ran out (after ${droppedAfter} of ${puts})`);
    t.diagnostic(`dropped after ${droppedAfter} changes of ~${eventBytes} bytes; at most ${maxQueued} bytes were queued for it`);

    const versionsSeen = () => reader.events.filter((e) => e.event === 'function').map((e) => JSON.parse(e.data).item.version);
    const last = 1 + puts;
    await until('the reading client to see the last change', () => versionsSeen().includes(last), 30_000);
    const updates = versionsSeen().filter((v: number) => v > 1);
    assert.deepEqual(updates, Array.from({ length: puts }, (_, i) => i + 2), 'the reading client got every change, in order');
    assert.equal(reader.events[0]?.event, 'hello');

    stalled.resume(); // reading now, it sees the connection gone rather than the rest of the events
    await Promise.race([stalledClosed, new Promise((_, reject) => setTimeout(() => reject(new Error('stalled client never saw the drop')), 10_000))]);
    reader.abort();
  });
});

describe('the real server (node dist/src/cli.js serve)', () => {
  const secret = `tok-${randomBytes(16).toString('hex')}`;
  const wrong = `wrong-${randomBytes(16).toString('hex')}`;
  const wrongHeader = `hdr-${randomBytes(16).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-events-'));
  let cli: CliServer | undefined;
  let streams: Sse[] = [];
  let stalled: Socket | undefined;

  after(() => {
    for (const s of streams) s.abort();
    stalled?.destroy();
    if (cli && cli.process.exitCode === null) cli.process.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  const lines = () => (cli?.output() ?? '').split('\n').filter(Boolean);
  const requestLines = () => lines().filter((l) => l.includes('"incoming request"')).map((l) => JSON.parse(l).req);

  test('no token appears in any log line: query tokens, wrong tokens, 404s, headers', async () => {
    cli = await startCli({ FNVM_DATA_DIR: dataDir, FNVM_API_TOKEN: secret, FNVM_LOG_LEVEL: 'info', FNVM_POOL_SIZE: '0' });
    const url = cli.url;
    streams = [
      await follow(`${url}/v1/events?access_token=${secret}`),
      await follow(`${url}/v1/events?x=1&access%5Ftoken=${secret}`), // the name encoded: still the token
    ];
    const answers: Array<[string, RequestInit, number]> = [
      [`/v1/events?access_token=${wrong}`, {}, 401],
      [`/v1/functions/nope/events?access_token=${secret}`, {}, 404],
      [`/v1/functions/nope/events/extra?access_token=${secret}`, {}, 401], // not a stream: a query token is not taken
      [`/v1/nope/events?access_token=${secret}`, { method: 'POST' }, 404], // no such route (the 404 handler)
      ['/v1/functions', { headers: { authorization: `Bearer ${wrongHeader}` } }, 401],
      ['/v1/functions', { headers: { authorization: `Bearer ${secret}` } }, 200],
    ];
    for (const [path, init, status] of answers) {
      const response = await fetch(url + path, init);
      const body = await response.text();
      assert.equal(response.status, status, `${path}: ${body}`);
      assert.ok(!body.includes(secret) && !body.includes(wrong), `${path} does not echo the token: ${body}`);
    }
    const requests = answers.length + streams.length;
    await until(`${requests} logged requests`, () => requestLines().length >= requests, 10_000);

    const urls = requestLines().map((r: { url: string }) => r.url);
    assert.ok(urls.includes('/v1/events?access_token=[redacted]'), `stream requests are logged, redacted: ${urls.join(' ')}`);
    assert.ok(urls.includes('/v1/events?x=1&access_token=[redacted]'));
    assert.ok(urls.includes('/v1/nope/events?access_token=[redacted]'));
    for (const token of [secret, wrong, wrongHeader]) {
      assert.deepEqual(lines().filter((l) => l.includes(token)), [], 'no line carries a token');
    }
  });

  test('SIGTERM ends open streams and the server exits 0 promptly', async () => {
    assert.ok(cli, 'the server of the previous test is running');
    assert.equal(cli.process.exitCode, null);
    stalled = await stall(cli.url, `/v1/events?access_token=${secret}`); // a tab that stopped reading
    const stalledClosed = new Promise<void>((resolve) => stalled?.once('close', () => resolve()));
    cli.process.kill('SIGTERM');
    const code = await Promise.race([cli.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still running 15 s after SIGTERM:\n${cli?.output()}`)), 15_000))]);
    assert.equal(code, 0, cli.output());
    for (const s of streams) await s.ended; // a clean end of the stream, not a broken connection
    stalled.resume();
    await stalledClosed;
    assert.ok(lines().some((l) => l.includes('SIGTERM: shutting down')));
    assert.deepEqual(lines().filter((l) => l.includes(secret)), [], 'nor do shutdown lines carry the token');
  });
});

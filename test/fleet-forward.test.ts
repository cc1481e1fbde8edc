// Forwarding between fleet hosts, over real HTTP on loopback: a "front" host forwards /v1/functions/:id/* to the
// "owner" host; bodies stream both ways byte-exact, statuses and headers pass, failures are prompt 503s or aborts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { lambdaRefusal } from '../src/api/lambda/errors.js';
import { invocationsForwardedFirst } from '../src/api/server.js';
import { hasCommand } from '../src/exec.js';
import { checkClusterSecret, clusterSecretHeader, requireClusterSecret } from '../src/fleet/cluster-secret.js';
import { Forwarder, forwardedByHeader, forwardedForHeader, type ForwardTarget } from '../src/fleet/forward.js';
import { until } from './support/sse.js';

const secret = 'test-cluster-secret-0123456789';
const download = randomBytes(5 * 1024 * 1024);

interface Answer { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** One request on its own connection; `body` chunks are written in turn, each after the promise before it. */
function send(url: string, options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer; localAddress?: string; agent?: Agent } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false, localAddress: options.localAddress }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * A request written by hand to the front; what comes back until the connection closes (an HTTP/1.0 request,
 * so the body arrives as is). `slowly`: read 8 KiB a millisecond.
 */
function sendRaw(text: string, { slowly = false } = {}): Promise<{ head: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(frontUrl).port), '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = slowly ? setInterval(() => {
      const chunk = socket.read(8192) as Buffer | null;
      if (chunk !== null) chunks.push(chunk);
    }, 1) : undefined;
    if (!slowly) socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      clearInterval(timer);
      const received = Buffer.concat(chunks);
      const split = received.indexOf('\r\n\r\n');
      resolve({ head: received.subarray(0, split).toString(), body: received.subarray(split + 4) });
    });
    socket.on('error', reject);
    socket.write(text);
  });
}

const json = (answer: Answer) => JSON.parse(answer.body.toString());
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

// The owner: what a host holding the functions answers, and what it saw of the forwarded requests.
const seen = { uploadBytes: 0, cutShort: 0, requests: 0, connections: 0 };

function ownerApp(): FastifyInstance {
  const app = Fastify();
  app.server.on('connection', () => void seen.connections++);
  app.addHook('onRequest', async () => void seen.requests++);
  // Uploads are hashed as they arrive, never held: `seen.uploadBytes` shows how much reached the owner so far.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));
  const echo = async (request: any, reply: any) => {
    void reply.header('x-served-by', 'owner').header('x-latin-back', 'caf\u00e9');
    return { method: request.method, url: request.url, query: request.query, headers: request.headers, body: request.body ?? null };
  };
  app.route({ method: ['GET', 'POST', 'PUT', 'DELETE'], url: '/v1/functions/:id/echo', handler: echo });
  app.route({ method: ['GET', 'POST', 'PUT', 'DELETE'], url: '/v1/functions/:id/echo/*', handler: echo });
  app.post('/v1/functions/:id/upload', async (request) => {
    const hash = createHash('sha256');
    seen.uploadBytes = 0;
    for await (const chunk of request.body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      seen.uploadBytes += chunk.length;
    }
    return { bytes: seen.uploadBytes, sha256: hash.digest('hex') };
  });
  app.get('/v1/functions/:id/download', async (_request, reply) => reply.type('application/octet-stream').send(download));
  // The same in 1 KiB chunks of a chunked answer: many to a read, as an event stream has.
  app.get('/v1/functions/:id/chunks', (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/octet-stream' });
    for (let at = 0; at < download.length; at += 1024) reply.raw.write(download.subarray(at, at + 1024));
    reply.raw.end();
  });
  // Five events 200 ms apart, the head flushed at once (as src/api/sse.ts does).
  app.get('/v1/functions/:id/events', (_request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    let sent = 0;
    const timer = setInterval(() => {
      res.write(`event: tick\ndata: ${++sent}\n\n`);
      if (sent === 5) {
        clearInterval(timer);
        res.end();
      }
    }, 200);
    res.on('close', () => {
      clearInterval(timer);
      if (!res.writableFinished) seen.cutShort++;
    });
  });
  app.get('/v1/functions/:id/nothing', async (_request, reply) => reply.status(204).header('x-served-by', 'owner').send());
  // Refuses an upload before reading it (as a body limit does).
  app.post('/v1/functions/:id/refused', { onRequest: async (_request, reply) => reply.status(413).send({ error: 'too large' }) }, async () => ({}));
  app.get('/v1/functions/:id/limited', async (_request, reply) => reply.status(429)
    .header('retry-after', '7').header('x-rate-limit', 'exceeded').header('set-cookie', ['a=1; Path=/', 'b=2; Path=/'])
    .send({ error: 'slow down' }));
  // Takes 10 s to answer (a long invocation).
  app.get('/v1/functions/:id/slow', (_request, reply) => {
    reply.hijack();
    const timer = setTimeout(() => reply.raw.end('late'), 10_000);
    reply.raw.on('close', () => {
      clearTimeout(timer);
      if (!reply.raw.writableFinished) seen.cutShort++;
    });
  });
  // Dies mid-answer: a chunked body that never gets its last chunk.
  app.get('/v1/functions/:id/cut', (request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.write('the beginning of an answer');
    setTimeout(() => request.raw.socket.destroy(), 50);
  });
  // Dies before answering at all.
  app.get('/v1/functions/:id/hangup', (request, reply) => {
    reply.hijack();
    request.raw.socket.destroy();
  });
  return app;
}

/** A host that forwards /v1/functions/:id/* to the host `targets` names for the id, and serves /internal/. */
function frontApp(hostId: string, targets: (id: string) => ForwardTarget): { app: FastifyInstance; forwarder: Forwarder } {
  const app = Fastify();
  const forwarder = new Forwarder({ hostId, secret });
  requireClusterSecret(app, secret);
  // Headers set before the forward (as CORS does): kept, unless the owner sends its own.
  app.addHook('onRequest', async (_request, reply) => void reply.header('x-front', 'set').header('x-served-by', 'front'));
  app.addHook('onRequest', forwarder.hook((request: any) => request.routeOptions.url === '/v1/functions/:id/*' ? targets(request.params.id) : undefined));
  app.addHook('onClose', async () => forwarder.close());
  app.all('/v1/functions/:id/*', async () => ({ error: 'not forwarded' }));
  app.get('/v1/health', async () => ({ host: hostId }));
  app.get('/v1/client', async (request) => ({ client: forwarder.clientOf(request) ?? null }));
  app.get('/internal/ping', async () => ({ pong: true }));
  return { app, forwarder };
}

/** An owner that speaks HTTP by hand, to answer what Node's server never would: the path names the answer. */
const rawAnswers: Record<string, string> = {
  '/v1/functions/raw/garbage': 'this is not HTTP\r\n\r\n',
  '/v1/functions/raw/continue': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
  '/v1/functions/raw/until-close': 'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it, until the connection closes',
  '/v1/functions/raw/huge-head': `HTTP/1.1 200 OK\r\n${'x-filler: ' + 'y'.repeat(1000) + '\r\n'}`.repeat(100),
  // Two answers to one request, or one and then some bytes: the connection left open (keptOpen).
  '/v1/functions/raw/twice': 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond',
  '/v1/functions/raw/junk': 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokJUNK',
  // Heads Node would refuse to send on: a control character in the status message, a status below 100, a control
  // character in a header's value after two good headers.
  '/v1/functions/raw/control': 'HTTP/1.1 200 O\x01K\r\ncontent-length: 0\r\n\r\n',
  '/v1/functions/raw/odd-status': 'HTTP/1.1 099 Odd\r\nset-cookie: owner=1\r\ncontent-encoding: gzip\r\ncontent-length: 0\r\n\r\n',
  '/v1/functions/raw/bad-value': 'HTTP/1.1 200 OK\r\nset-cookie: owner=1\r\nx-served-by: raw\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n',
  '/v1/functions/raw/two-lengths': 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok',
};
const keptOpen = new Set(['/v1/functions/raw/twice', '/v1/functions/raw/junk']);
let rawConnections = 0;

function rawOwner(): Server {
  return createServer((socket) => {
    rawConnections++;
    let text = '';
    socket.on('data', (data: Buffer) => {
      text += data.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      const path = text.split(' ')[1] ?? '';
      text = '';
      if (keptOpen.has(path)) socket.write(rawAnswers[path] ?? '');
      else socket.end(rawAnswers[path] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    });
    socket.on('error', () => {});
  });
}

// A port that refuses connections (a host that is down), and a listener that never accepts (a host that is gone
// without a trace: the connection attempt hangs) when python3 is there to make one.
let owner: FastifyInstance;
let front: FastifyInstance;
let second: FastifyInstance;
let ephemeral: FastifyInstance;
let ownerUrl: string;
let frontUrl: string;
let ephemeralUrl: string;
let secondUrl: string;
let downUrl: string;
let blackhole: { url: string; stop: () => void } | undefined;
let raw: Server;
let rawUrl: string;

async function startBlackhole(): Promise<{ url: string; stop: () => void }> {
  // backlog 0 and no accept(): once one connection waits in the queue, the kernel drops further SYNs.
  const script = 'import socket,sys\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0)\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()';
  const python = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => python.stdout.once('data', (data: Buffer) => resolve(Number(data.toString().trim()))));
  const fillers: Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const socket = connect(port, '127.0.0.1').on('error', () => {});
    fillers.push(socket);
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 300);
      socket.once('connect', () => resolve(clearTimeout(timer) === undefined));
    });
    if (!connected) break;
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => { fillers.forEach((s) => s.destroy()); python.stdin.end(); } };
}

before(async () => {
  owner = ownerApp();
  ownerUrl = await listen(owner);
  ephemeral = ownerApp();
  ephemeralUrl = await listen(ephemeral);
  const closed = Fastify();
  downUrl = await listen(closed);
  await closed.close();
  if (hasCommand('python3')) blackhole = await startBlackhole();
  raw = rawOwner();
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  rawUrl = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  second = frontApp('second', () => ({ id: 'owner', url: ownerUrl })).app;
  secondUrl = await listen(second);
  front = frontApp('front', (id) => {
    if (id === 'down') return { id: 'down', url: downUrl };
    if (id === 'gone') return { id: 'gone', url: blackhole?.url ?? downUrl };
    if (id === 'ephemeral') return { id: 'ephemeral', url: ephemeralUrl };
    if (id === 'raw') return { id: 'raw', url: rawUrl };
    if (id === 'hop') return { id: 'second', url: secondUrl }; // `second` thinks the owner is elsewhere: a loop
    return { id: 'owner', url: ownerUrl };
  }).app;
  frontUrl = await listen(front);
});

after(async () => {
  await front?.close();
  await second?.close();
  await owner?.close();
  if (ephemeral?.server.listening) await ephemeral.close();
  blackhole?.stop();
  await new Promise((resolve) => raw?.close(resolve));
});

test('method, path, query, end-to-end headers and body reach the owner; hop-by-hop and smuggled headers do not', async () => {
  const path = '/v1/functions/f1/echo/a%2Fb?x=1&x=2&y=%20z';
  const body = JSON.stringify({ event: { name: 'World', n: [1, 2, 3] } });
  const answer = await send(`${frontUrl}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', 'x-custom': 'kept', authorization: 'Bearer user-token',
      connection: 'keep-alive, x-hop', 'x-hop': 'named by connection', 'keep-alive': 'timeout=5', te: 'trailers',
      'proxy-authorization': 'Basic eDp5', [clusterSecretHeader]: 'smuggled-by-a-client', [forwardedByHeader]: 'evil',
    },
    body,
  });
  assert.equal(answer.status, 200);
  assert.equal(answer.headers['x-served-by'], 'owner', "the owner's headers come back, in place of the front's");
  assert.equal(answer.headers['x-front'], 'set', 'a header only the front set stays');
  const echoed = json(answer);
  assert.equal(echoed.method, 'POST');
  assert.equal(echoed.url, path, 'the path and query as the client sent them');
  assert.deepEqual(echoed.query, { x: ['1', '2'], y: ' z' });
  assert.deepEqual(echoed.body, JSON.parse(body));
  const headers = echoed.headers;
  assert.equal(headers['x-custom'], 'kept');
  assert.equal(headers.authorization, 'Bearer user-token');
  assert.equal(headers.host, new URL(frontUrl).host, 'Host stays the one the client addressed (SigV4 signs it)');
  assert.equal(headers['content-length'], String(Buffer.byteLength(body)));
  for (const name of ['x-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(headers[name], undefined, name);
  assert.equal(headers[clusterSecretHeader], secret, "the fleet's secret replaces the client's");
  assert.equal(headers[forwardedByHeader], 'front');
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const other = await send(`${frontUrl}/v1/functions/f1/echo?m=${method}`, { method, ...(method === 'PUT' ? { headers: { 'content-type': 'application/json' }, body: '{"a":1}' } : {}) });
    assert.equal(other.status, 200);
    assert.equal(json(other).method, method);
    assert.deepEqual(json(other).body, method === 'PUT' ? { a: 1 } : null);
  }
  assert.deepEqual(json(await send(`${frontUrl}/v1/health`)), { host: 'front' }, 'routes it holds are its own');
  // Header bytes beyond ASCII (Node's client writes a GET's head in latin1) arrive as sent: SigV4 may cover them.
  const latin = await send(`${frontUrl}/v1/functions/f1/echo`, { headers: { 'x-latin': 'caf\u00e9' } });
  assert.equal(json(latin).headers['x-latin'], 'caf\u00e9');
  const direct = await send(`${ownerUrl}/v1/functions/f1/echo`);
  assert.ok([...String(direct.headers['x-latin-back'])].some((c) => c.charCodeAt(0) > 0x7f), 'not ASCII');
  assert.equal(latin.headers['x-latin-back'], direct.headers['x-latin-back'], '... and come back as the owner sent them');
});

test("the client's address reaches the owner in the fleet's own header; the client's X-Forwarded-For passes unchanged", async () => {
  const direct = json(await send(`${frontUrl}/v1/functions/f1/echo`, { localAddress: '127.0.0.2' })).headers;
  assert.equal(direct[forwardedForHeader], '127.0.0.2');
  // What the client sent (its SigV4 signature may cover X-Forwarded-For) arrives as sent; a forged fleet header not.
  const chained = json(await send(`${frontUrl}/v1/functions/f1/echo`, { localAddress: '127.0.0.3', headers: { 'x-forwarded-for': '203.0.113.7', [forwardedForHeader]: '198.51.100.1' } })).headers;
  assert.deepEqual([chained['x-forwarded-for'], chained[forwardedForHeader]], ['203.0.113.7', '127.0.0.3']);
  // What a host makes of a forwarded request's client: believed only with the cluster secret.
  const forwarded = { [forwardedByHeader]: 'front', [forwardedForHeader]: '127.0.0.9' };
  assert.deepEqual(json(await send(`${secondUrl}/v1/client`, { headers: { ...forwarded, [clusterSecretHeader]: secret } })).client, { address: '127.0.0.9', host: 'front' });
  assert.equal(json(await send(`${secondUrl}/v1/client`, { headers: { ...forwarded, [clusterSecretHeader]: `${secret}x` } })).client, null);
  assert.equal(json(await send(`${secondUrl}/v1/client`, { headers: forwarded })).client, null);
});

test('a status and its headers pass unchanged (429 with Retry-After and two cookies)', async () => {
  const answer = await send(`${frontUrl}/v1/functions/f1/limited`);
  assert.equal(answer.status, 429);
  assert.equal(answer.headers['retry-after'], '7');
  assert.equal(answer.headers['x-rate-limit'], 'exceeded');
  assert.deepEqual(answer.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'both cookies, though the front had set headers');
  assert.equal(answer.headers['x-front'], 'set');
  assert.deepEqual(json(answer), { error: 'slow down' });
});

test('answers with no body (HEAD, 204) pass as such, and requests share one kept-alive connection to the owner', async () => {
  await send(`${frontUrl}/v1/functions/f1/echo`); // a connection to the owner, kept alive
  const connections = seen.connections;
  const head = await send(`${frontUrl}/v1/functions/f1/echo`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['x-served-by'], 'owner');
  assert.ok(Number(head.headers['content-length']) > 0, 'the length a GET would have');
  assert.equal(head.body.length, 0);
  const nothing = await send(`${frontUrl}/v1/functions/f1/nothing`, { method: 'GET' });
  assert.deepEqual([nothing.status, nothing.headers['x-served-by'], nothing.body.length], [204, 'owner', 0]);
  for (let i = 0; i < 5; i++) assert.equal((await send(`${frontUrl}/v1/functions/f1/echo?i=${i}`)).status, 200);
  assert.equal(seen.connections, connections, 'seven requests, each from a new client connection, and no new one to the owner');
});

test('an owner that refuses an upload before reading it: its answer reaches the client, and its connection is not reused', async () => {
  // The rest of the body is sent only once the answer is in: the owner answered with the body still on its way.
  const refused = await new Promise<Answer>((resolve, reject) => {
    const req = request(`${frontUrl}/v1/functions/f1/refused`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': 2 * 65536 }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        req.end(randomBytes(65536));
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
    req.write(randomBytes(65536));
  });
  assert.equal(refused.status, 413);
  assert.deepEqual(json(refused), { error: 'too large' });
  const connections = seen.connections;
  assert.equal((await send(`${frontUrl}/v1/functions/f1/echo`)).status, 200, 'the next request is answered');
  assert.equal(seen.connections, connections + 1, 'on a new connection: the old one had an unsent body in it');
});

test('an owner answer that is not HTTP, has a head too large or unsendable, is a 503; 100 Continue and close-delimited bodies pass; bytes past an answer spoil its connection', async () => {
  const garbage = await send(`${frontUrl}/v1/functions/raw/garbage`);
  assert.equal(garbage.status, 503);
  assert.match(json(garbage).error, /^host raw at .* sent a malformed answer/);
  const huge = await send(`${frontUrl}/v1/functions/raw/huge-head`);
  assert.equal(huge.status, 503);
  assert.match(json(huge).error, /^host raw at .* sent a malformed answer: max header size exceeded/);
  const continued = await send(`${frontUrl}/v1/functions/raw/continue`);
  assert.deepEqual([continued.status, continued.body.toString()], [200, 'ok'], 'the final answer, not the interim one');
  const untilClose = await send(`${frontUrl}/v1/functions/raw/until-close`);
  assert.deepEqual([untilClose.status, untilClose.body.toString()], [200, 'all of it, until the connection closes']);
  for (const [path, body] of [['twice', 'first'], ['junk', 'ok']]) {
    const answer = await send(`${frontUrl}/v1/functions/raw/${path}`);
    assert.deepEqual([answer.status, answer.body.toString()], [200, body]);
    const connections = rawConnections;
    assert.deepEqual((await send(`${frontUrl}/v1/functions/raw/continue`)).body.toString(), 'ok');
    assert.equal(rawConnections, connections + 1, `${path}: the connection that carried more than its answer is not used again`);
  }
  // Refused before anything of the owner's head reaches the client's answer (no cookie, no gzip on a JSON 503).
  for (const path of ['control', 'odd-status', 'bad-value']) {
    const refused = await send(`${frontUrl}/v1/functions/raw/${path}`);
    assert.equal(refused.status, 503, path);
    assert.match(json(refused).error, /^host raw at .* sent a head this host cannot pass on: /);
    assert.deepEqual([refused.headers['set-cookie'], refused.headers['content-encoding']], [undefined, undefined]);
    assert.deepEqual([refused.headers['x-front'], refused.headers['x-served-by']], ['set', 'front'], `${path}: the front's own headers as they were`);
  }
  const lengths = await send(`${frontUrl}/v1/functions/raw/two-lengths`);
  assert.deepEqual([lengths.status, lengths.headers['content-length'], lengths.body.toString()], [200, '2', 'ok'], 'one Content-Length, which a client accepts');
});

test('a client that reads slowly holds the owner back, and the connection serves the next request once the answer is done', async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
  process.on('warning', onWarning);
  try {
    // 5 MiB in 1 KiB chunks read 8 KiB a millisecond: the front's writes to the client fill up long before the owner
    // is done, many chunks to each of its reads.
    const received = await sendRaw('GET /v1/functions/f1/chunks HTTP/1.0\r\nhost: front\r\n\r\n', { slowly: true });
    assert.match(received.head, /^HTTP\/1\.1 200 /);
    assert.equal(sha256(received.body), sha256(download), 'byte-exact');
    // The connection it came over (the one used last) carries the next request.
    const connections = seen.connections;
    const next = await Promise.race([send(`${frontUrl}/v1/functions/f1/echo`), new Promise<Answer>((_resolve, reject) => setTimeout(() => reject(new Error('the next request got no answer in 3 s')), 3000))]);
    assert.equal(next.status, 200);
    assert.equal(seen.connections, connections, 'no new connection to the owner');
    assert.deepEqual(warnings, [], 'no listener piles up while the client is slow');
  } finally {
    process.off('warning', onWarning);
  }
});

test('an HTTP/1.0 request without Host reaches the owner with one', async () => {
  const { head, body } = await sendRaw('GET /v1/functions/f1/echo HTTP/1.0\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.equal(JSON.parse(body.toString()).headers.host, new URL(ownerUrl).host);
});

test('a 5 MB upload streams to the owner as it is sent, and a 5 MB answer comes back byte-exact', async () => {
  const body = randomBytes(5 * 1024 * 1024);
  const first = 1024 * 1024;
  const answer = new Promise<Answer>((resolve, reject) => {
    const req = request(`${frontUrl}/v1/functions/f1/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.write(body.subarray(0, first));
    // The rest is sent only once the owner has the first MiB: a front that buffered the body would stall here.
    until('the owner to receive the first MiB before the rest is sent', () => seen.uploadBytes >= first, 5000)
      .then(() => req.end(body.subarray(first)), (error: Error) => req.destroy(error));
  });
  const uploaded = await answer;
  assert.equal(uploaded.status, 200, uploaded.body.toString());
  assert.deepEqual(json(uploaded), { bytes: body.length, sha256: sha256(body) });
  const downloaded = await send(`${frontUrl}/v1/functions/f1/download`);
  assert.equal(downloaded.status, 200);
  assert.equal(downloaded.headers['content-length'], String(download.length));
  assert.equal(sha256(downloaded.body), sha256(download));
});

/** Opens the owner's event stream through the front: when the head came, and each event as it arrives. */
function events(onEvent: (at: number, stop: () => void) => void): Promise<{ headAt: number; endAt: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    // node:http, not fetch: undici opens a spare connection after an abort, which would hold up the front's close.
    const req = request(`${frontUrl}/v1/functions/f1/events`, { agent: false }, (res) => {
      const headAt = performance.now() - start;
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        while (text.includes('\n\n')) {
          text = text.slice(text.indexOf('\n\n') + 2);
          onEvent(performance.now() - start, () => req.destroy());
        }
      });
      res.on('end', () => resolve({ headAt, endAt: performance.now() - start }));
      res.on('close', () => resolve({ headAt, endAt: NaN }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('server-sent events arrive one by one, the head at once', async () => {
  const arrivals: number[] = [];
  const { headAt, endAt } = await events((at) => arrivals.push(at));
  assert.equal(arrivals.length, 5);
  const [firstAt] = arrivals as [number];
  // The owner flushes its head at once and sends an event every 200 ms from 200 ms on, ending at about 1 s.
  assert.ok(headAt < firstAt - 100, `head at ${headAt.toFixed(0)} ms, first event at ${firstAt.toFixed(0)} ms`);
  assert.ok(firstAt < endAt - 500, `first event at ${firstAt.toFixed(0)} ms, end at ${endAt.toFixed(0)} ms`);
  assert.ok(arrivals.every((at, i) => i === 0 || at - arrivals[i - 1]! > 100), `events at ${arrivals.map((a) => a.toFixed(0)).join(', ')} ms`);
});

test('a client that goes away takes the forwarded request with it', async () => {
  const before = seen.cutShort;
  await events((_at, stop) => stop());
  await until('the owner to see its stream closed early', () => seen.cutShort === before + 1, 2000);
  // ... also while the owner has not answered yet.
  const req = request(`${frontUrl}/v1/functions/f1/slow`, { agent: false }).on('error', () => {});
  req.end();
  setTimeout(() => req.destroy(), 300);
  await until('the owner to see the slow request closed early', () => seen.cutShort === before + 2, 2000);
});

test('an owner that dies mid-answer: the client sees its answer cut short, not a clean end', async () => {
  const outcome = await new Promise<string>((resolve) => {
    const req = request(`${frontUrl}/v1/functions/f1/cut`, { agent: false }, (res) => {
      assert.equal(res.statusCode, 200);
      res.on('data', () => {});
      res.on('end', () => resolve('ended cleanly'));
      res.on('error', (error) => resolve(`error: ${error.message}`));
    });
    req.on('error', (error) => resolve(`request error: ${error.message}`));
    req.end();
  });
  assert.match(outcome, /^error: aborted/);
});

test('an owner that is down, resets, or never accepts the connection: a prompt 503 naming it', async () => {
  let start = performance.now();
  const down = await send(`${frontUrl}/v1/functions/down/echo`);
  assert.equal(down.status, 503);
  assert.match(json(down).error, new RegExp(`^host down at ${downUrl} is unreachable: .*ECONNREFUSED`));
  assert.ok(performance.now() - start < 3000);

  const hangup = await send(`${frontUrl}/v1/functions/f1/hangup`);
  assert.equal(hangup.status, 503);
  assert.match(json(hangup).error, /^host owner at .* is unreachable: socket hang up/);

  // Kept-alive connections to a host that stops are not reused as if it were there.
  assert.equal((await send(`${frontUrl}/v1/functions/ephemeral/echo`)).status, 200);
  await ephemeral.close();
  const stopped = await send(`${frontUrl}/v1/functions/ephemeral/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(stopped.status, 503);
  assert.match(json(stopped).error, /^host ephemeral at .* is unreachable/);

  assert.ok(blackhole, 'this test needs python3 (to make a listener that never accepts connections)');
  start = performance.now();
  const gone = await send(`${frontUrl}/v1/functions/gone/echo`);
  const elapsed = performance.now() - start;
  assert.equal(gone.status, 503);
  assert.match(json(gone).error, /^host gone at .* is unreachable: no connection within 1500 ms$/);
  assert.ok(elapsed > 1000 && elapsed < 3000, `503 after ${elapsed.toFixed(0)} ms`);
});

test('a request already forwarded once is refused by a second host that does not hold the function', async () => {
  const before = seen.requests;
  const answer = await send(`${frontUrl}/v1/functions/hop/echo`);
  assert.equal(answer.status, 503);
  assert.match(json(answer).error, /^host second does not hold this function and the request was already forwarded by host front: not forwarding it again$/);
  assert.equal(seen.requests, before, 'the owner never saw it');
  // A client that claims to be a forwarding host, without the secret, is simply forwarded.
  const forged = await send(`${frontUrl}/v1/functions/f1/echo`, { headers: { [forwardedByHeader]: 'other', [clusterSecretHeader]: 'a-guess-at-the-secret' } });
  assert.equal(forged.status, 200);
  assert.equal(json(forged).headers[forwardedByHeader], 'front');
});

test('internal routes need the cluster secret', async () => {
  const ping = (path: string, value?: string) => send(`${frontUrl}${path}`, value === undefined ? {} : { headers: { [clusterSecretHeader]: value } });
  const missing = await ping('/internal/ping');
  assert.equal(missing.status, 401);
  assert.match(json(missing).error, /x-fnvm-cluster-secret/);
  assert.equal((await ping('/internal/ping', 'wrong')).status, 401);
  assert.equal((await ping('/internal/ping', secret.replace(/.$/, 'X'))).status, 401, 'same length, last character wrong');
  assert.equal((await ping('/internal/ping', `${secret}x`)).status, 401);
  assert.deepEqual(json(await ping('/internal/ping', secret)), { pong: true });
  assert.equal((await ping('/%69nternal/ping')).status, 401, 'a percent-encoded path reaches the route, and is checked too');
  assert.equal((await ping('/internal/nothing-here')).status, 401, 'unknown internal routes answer 401 before 404');
  assert.equal((await ping('/v1/health')).status, 200, 'the public API is not affected');
});

test('a fleet refuses to start without a cluster secret of reasonable strength', () => {
  assert.throws(() => checkClusterSecret(undefined), /a fleet needs FNVM_CLUSTER_SECRET/);
  assert.throws(() => checkClusterSecret(''), /FNVM_CLUSTER_SECRET/);
  assert.throws(() => checkClusterSecret('short-secret'), /FNVM_CLUSTER_SECRET is too short \(12 characters\): at least 16/);
  assert.throws(() => checkClusterSecret('sixteen chars ok'), /printable ASCII without spaces/);
  assert.throws(() => checkClusterSecret('0123456789abcdef\n'), /printable ASCII/);
  assert.equal(checkClusterSecret(secret), secret);
});

test("a fleet host's front door: invocations of a function held elsewhere are forwarded before Fastify, the rest reach Fastify", async () => {
  // What the fleet is asked (Fleet.forwardEarly), and a fleet for which only `remote` is another host's.
  const asked: { url: string; ref: string; lambda: boolean }[] = [];
  const app = Fastify({
    serverFactory: invocationsForwardedFirst({
      forwardEarly: (req, res, ref, refusal) => {
        asked.push({ url: req.url ?? '', ref, lambda: refusal === lambdaRefusal });
        if (ref !== 'remote') return false;
        req.resume();
        res.end('forwarded early');
        return true;
      },
    }),
  });
  app.all('/*', async (request) => `fastify: ${request.method} ${request.url}`);
  const url = await listen(app);
  try {
    const post = async (path: string, method = 'POST') => (await send(`${url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined })).body.toString();
    const arn = encodeURIComponent('arn:aws:lambda:us-east-1:000000000000:function:remote');
    assert.equal(await post('/v1/functions/remote/invoke'), 'forwarded early');
    assert.equal(await post('/v1/functions/remote/invoke?x=1'), 'forwarded early');
    assert.equal(await post(`/2015-03-31/functions/${arn}/invocations`), 'forwarded early');
    assert.equal(await post('/2015-03-31/functions/remote/invocations?Qualifier=%24LATEST'), 'forwarded early');
    assert.equal(await post('/v1/functions/local/invoke'), 'fastify: POST /v1/functions/local/invoke');
    assert.deepEqual(asked, [
      { url: '/v1/functions/remote/invoke', ref: 'remote', lambda: false },
      { url: '/v1/functions/remote/invoke?x=1', ref: 'remote', lambda: false },
      { url: `/2015-03-31/functions/${arn}/invocations`, ref: 'remote', lambda: true },
      { url: '/2015-03-31/functions/remote/invocations?Qualifier=%24LATEST', ref: 'remote', lambda: true },
      { url: '/v1/functions/local/invoke', ref: 'local', lambda: false },
    ], 'v1 invocations with fnvm refusals, Lambda ones (name or ARN) with Lambda\'s');
    asked.length = 0;
    // Not invocations, or names the router would decode differently: Fastify's, and its route's hook decides.
    const others = ['/v1/functions/remote', '/v1/functions/remote/invoke/more', '/v1/functions/re%6Dote/invoke', '/2015-03-31/functions/remote/configuration'];
    for (const path of [...others, '/2015-03-31/functions/111111111111%3Afunction%3Aremote/invocations']) {
      assert.equal(await post(path), `fastify: POST ${path}`, path);
    }
    assert.equal(await post('/v1/functions/remote/invoke', 'GET'), 'fastify: GET /v1/functions/remote/invoke');
    assert.deepEqual(asked, [], 'the fleet was not even asked');
    assert.equal(app.server.keepAliveTimeout, 72_000, "Fastify's own server settings");
  } finally {
    await app.close();
  }
});

test('a closing front door leaves requests to Fastify, which answers 503 and closes the connection, so the server closes', async () => {
  const app = Fastify({
    serverFactory: invocationsForwardedFirst({
      forwardEarly: (req, res) => {
        req.resume();
        setTimeout(() => res.end('forwarded early'), 300); // an invocation under way as the close begins
        return true;
      },
    }),
  });
  const url = await listen(app);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 }); // both requests on one connection, in turn
  const invoke = () => send(`${url}/v1/functions/remote/invoke`, { method: 'POST', agent, headers: { 'content-type': 'application/json' }, body: '{}' });
  try {
    const first = invoke();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const start = performance.now();
    const closed = app.close();
    const second = invoke();
    assert.equal((await first).body.toString(), 'forwarded early');
    const refused = await second;
    assert.equal(refused.status, 503, 'Fastify answers it (return503OnClosing), not the front door');
    assert.equal(refused.headers.connection, 'close');
    await Promise.race([closed, new Promise((_resolve, reject) => setTimeout(() => reject(new Error('the server did not close within 3 s')), 3000))]);
    assert.ok(performance.now() - start < 3000);
  } finally {
    agent.destroy();
  }
});

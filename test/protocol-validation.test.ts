// The host's checks on guest frames, against a scripted fake guest: every malformed, forged or oversized
// frame fails the channel (GuestProtocolError); legitimate stragglers do not. Real VMs: hostile.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { ChannelTimeoutError, GuestChannel, GuestProtocolError, GuestRequestError } from '../src/guest/channel.js';
import { FrameDecoder, MAX_FRAME_BYTES } from '../src/guest/framing.js';
import { answerJson } from '../src/functions/answer.js';
import { jsonTextDepth, maxResponseBytes, maxResponseDepth, measuredJson } from '../src/guest/limits.js';
import { maxLogChars } from '../src/guest/validate.js';
import { ConsoleRing } from '../src/vm/console-ring.js';
import { maxQmpLineChars, QmpClient, QmpError } from '../src/vm/qmp.js';

/** A guest that records the host's requests and sends whatever bytes a test gives it. */
function fakeGuest() {
  const requests: Array<{ id: number; type: string }> = [];
  const decoder = new FrameDecoder();
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      for (const frame of decoder.push(chunk)) {
        const { id, type } = frame as { id: number; type: string };
        requests.push({ id, type });
      }
      done();
    },
  });
  const channel = new GuestChannel(stream);
  const sendRaw = (bytes: Buffer) => stream.push(bytes);
  const send = (message: unknown) => sendRaw(frame(Buffer.from(JSON.stringify(message))));
  /** The channel writes a turn's frames when the turn ends: after this, `requests` has them. */
  const sent = () => new Promise((resolve) => setImmediate(resolve));
  return { channel, requests, send, sendRaw, sent };
}

function frame(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

const invokeResult = (fields: Record<string, unknown> = {}) => ({
  status: 'success', response: 'hi', error: null, logs: ['a line'], duration_ms: 1.5, version: 3, ...fields,
});

const invoke = (channel: GuestChannel, timeoutMs?: number) =>
  channel.request('invoke', { request_id: 'r', event: {}, timeout_ms: 1000 }, timeoutMs);

async function assertViolation(promise: Promise<unknown>, channel: GuestChannel, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof GuestProtocolError, `a GuestProtocolError, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
  assert.equal(channel.closed, true, 'the channel is dropped');
}

describe('guest replies', () => {
  test('a well-formed reply resolves with the checked result', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    await guest.sent();
    guest.send({ id: guest.requests[0]!.id, ok: true, result: invokeResult() });
    assert.deepEqual(await pending, invokeResult());
    assert.equal(guest.channel.closed, false);
  });

  test('ok:false with an ErrorInfo is a request error, not a violation', async () => {
    const guest = fakeGuest();
    const pending = guest.channel.request('ping', {});
    guest.send({ id: 1, ok: false, error: { type: 'UnknownRequest', message: 'no', stack: '' } });
    await assert.rejects(pending, GuestRequestError);
    assert.equal(guest.channel.closed, false);
  });

  const malformed: Array<[string, (id: number) => unknown, RegExp]> = [
    ['a forged id', () => ({ id: 999_999, ok: true, result: invokeResult() }), /not pending/],
    ['a non-integer id', () => ({ id: 1.5, ok: true, result: invokeResult() }), /reply id/],
    ['a zero id', () => ({ id: 0, ok: true, result: invokeResult() }), /reply id/],
    ['ok as a string', (id) => ({ id, ok: 'yes', result: invokeResult() }), /reply ok/],
    ['no result', (id) => ({ id, ok: true }), /without result/],
    ['an error that is not an ErrorInfo', (id) => ({ id, ok: false, error: 'boom' }), /reply error/],
    ['an ErrorInfo with a numeric message', (id) => ({ id, ok: false, error: { type: 'E', message: 1, stack: '' } }), /message/],
    ['an array frame', () => [1, 2], /reply is not an object/],
    ['a status outside success|error', (id) => ({ id, ok: true, result: invokeResult({ status: 7 }) }), /status/],
    ['logs that are not strings', (id) => ({ id, ok: true, result: invokeResult({ logs: [1] }) }), /logs entry/],
    ['logs over the bound', (id) => ({ id, ok: true, result: invokeResult({ logs: ['x'.repeat(maxLogChars + 1)] }) }), /logs exceed/],
    ['a non-finite duration', (id) => ({ id, ok: true, result: invokeResult({ duration_ms: '1' }) }), /duration_ms/],
    ['a fractional version', (id) => ({ id, ok: true, result: invokeResult({ version: 1.5 }) }), /version/],
    ['success with an error', (id) => ({ id, ok: true, result: invokeResult({ error: { type: 'E', message: 'm', stack: '' } }) }), /disagree/],
    ['error without an error', (id) => ({ id, ok: true, result: invokeResult({ status: 'error' }) }), /disagree/],
    ['no response key', (id) => ({ id, ok: true, result: { ...invokeResult(), response: undefined } }), /without response/],
  ];
  for (const [what, reply, pattern] of malformed) {
    test(`${what} fails the channel and every request in flight`, async () => {
      const guest = fakeGuest();
      const first = invoke(guest.channel);
      const second = guest.channel.request('ping', {});
      await guest.sent();
      guest.send(reply(guest.requests[0]!.id));
      await assertViolation(first, guest.channel, pattern);
      await assert.rejects(second, GuestProtocolError);
    });
  }

  test('each request type checks its own result shape', async () => {
    const guest = fakeGuest();
    const ping = guest.channel.request('ping', {});
    guest.send({ id: 1, ok: true, result: { runtime: 'ruby', runtime_version: '3', agent_version: 1, loaded_version: null } });
    await assertViolation(ping, guest.channel, /runtime/);
    const other = fakeGuest();
    const stats = other.channel.request('stats', {});
    other.send({ id: 1, ok: true, result: { inflight: -1, loaded_version: null, memory_rss: 1 } });
    await assertViolation(stats, other.channel, /inflight/);
  });

  test('a duplicate reply (an id already answered) is a violation', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult() });
    await pending;
    const next = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult() });
    await assertViolation(next, guest.channel, /id 1, which is not pending/);
  });

  test('a late reply to a request that timed out is a straggler, once; a second copy is a violation', async () => {
    const guest = fakeGuest();
    await assert.rejects(invoke(guest.channel, 20), ChannelTimeoutError);
    const next = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult() });
    guest.send({ id: 2, ok: true, result: invokeResult({ response: 'second' }) });
    assert.equal((await next).response, 'second');
    assert.equal(guest.channel.closed, false);
    const third = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult() });
    await assertViolation(third, guest.channel, /not pending/);
  });

  test('garbage bytes (not JSON) and frames over the limit fail the channel', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    guest.sendRaw(frame(Buffer.from('\x00\xffnot json')));
    await assertViolation(pending, guest.channel, /violation/);

    const big = fakeGuest();
    const waiting = invoke(big.channel);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1);
    big.sendRaw(head);
    await assertViolation(waiting, big.channel, /exceeds/);
  });

  test('a violation with nothing in flight still closes the channel (the VM is then replaced)', async () => {
    const guest = fakeGuest();
    let reason: Error | null = null;
    guest.channel.onClose((error) => (reason = error));
    guest.send({ id: 42, ok: true, result: {} });
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(reason !== null && (reason as Error) instanceof GuestProtocolError);
  });
});

describe('response size (host side, whatever the agent says)', () => {
  const sized = (bytes: number) => 'x'.repeat(bytes - 2); // the JSON string's two quotes count

  test(`a success response of exactly ${maxResponseBytes} bytes passes; one byte more is ResponseTooLarge`, async () => {
    const guest = fakeGuest();
    const exact = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult({ response: sized(maxResponseBytes) }) });
    const ok = await exact;
    assert.equal(ok.status, 'success');
    assert.equal(JSON.stringify(ok.response).length, maxResponseBytes);

    const over = invoke(guest.channel);
    guest.send({ id: 2, ok: true, result: invokeResult({ response: sized(maxResponseBytes + 1), logs: ['kept'] }) });
    const result = await over;
    assert.equal(result.status, 'error');
    assert.equal(result.response, null);
    assert.equal(result.error?.type, 'ResponseTooLarge');
    assert.match(result.error?.message ?? '', /6291457 bytes.*measured by the host/);
    assert.deepEqual(result.logs, ['kept']);
    assert.equal(guest.channel.closed, false, 'an oversized response is the handler\'s error, not a violation');
  });

  test('a small frame whose response re-serialises past the limit (1e20 -> 21 digits) is ResponseTooLarge', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    const count = Math.ceil(maxResponseBytes / 22) + 1; // '100000000000000000000,' per item once re-serialised
    const body = `{"id":1,"ok":true,"result":{"status":"success","error":null,"logs":[],"duration_ms":1,"version":3,"response":[${Array(count).fill('1e20').join(',')}]}}`;
    assert.ok(body.length < maxResponseBytes / 4, 'the frame itself is well under the limit');
    guest.sendRaw(frame(Buffer.from(body)));
    assert.equal((await pending).error?.type, 'ResponseTooLarge');
  });

  test(`a response nested deeper than ${maxResponseDepth} levels is ResponseTooDeep, not a violation`, async () => {
    const guest = fakeGuest();
    const deep = invoke(guest.channel);
    const body = `{"id":1,"ok":true,"result":{"status":"success","error":null,"logs":[],"duration_ms":1,"version":3,"response":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    guest.sendRaw(frame(Buffer.from(body)));
    const result = await deep;
    assert.equal(result.error?.type, 'ResponseTooDeep');
    assert.equal(result.response, null);
    const shallow = invoke(guest.channel);
    guest.send({ id: 2, ok: true, result: invokeResult({ response: JSON.parse(`${'['.repeat(maxResponseDepth)}${']'.repeat(maxResponseDepth)}`) }) });
    assert.equal((await shallow).status, 'success', `${maxResponseDepth} levels pass`);
    assert.equal(guest.channel.closed, false);
  });

  test('an error result carrying a response is a violation (it would dodge the limits)', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    const error = { type: 'Error', message: 'no', stack: '' };
    guest.send({ id: 1, ok: true, result: invokeResult({ status: 'error', error, response: 'x'.repeat(1000) }) });
    await assertViolation(pending, guest.channel, /error result carries a response/);
  });

  test('error texts are kept to 64 Ki characters each', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    const error = { type: 'Error', message: 'm'.repeat(1_000_000), stack: 's'.repeat(70_000) };
    guest.send({ id: 1, ok: true, result: invokeResult({ status: 'error', error, response: null }) });
    const result = await pending;
    assert.equal(result.error?.message.length, 64 * 1024 + '... [truncated]'.length);
    assert.ok(result.error?.stack.endsWith('... [truncated]'));
  });

  test('multi-byte characters count as UTF-8 bytes', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    guest.send({ id: 1, ok: true, result: invokeResult({ response: 'é'.repeat(maxResponseBytes / 2) }) });
    assert.equal((await pending).error?.type, 'ResponseTooLarge');
  });
});

describe('nesting scan and measured responses', () => {
  /** Nesting depth of a parsed value, recursively (test values are shallow enough). */
  const depthOf = (value: unknown): number =>
    value !== null && typeof value === 'object' ? 1 + Math.max(0, ...Object.values(value).map(depthOf)) : 0;

  test('the byte scan finds the nesting JSON.parse sees, whatever the strings hold', () => {
    const tricky = ['', '[', ']', '{', '}', '"', '\\', '\\"', '\\\\', '"[', 'é[', '日本{', '🚀]', '\u0000', '\\u005b'];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const build = (levels: number): unknown => {
      if (levels === 0 || random() < 0.2) return tricky[Math.floor(random() * tricky.length)]!.repeat(1 + Math.floor(random() * 3));
      const children = Array.from({ length: 1 + Math.floor(random() * 3) }, () => build(levels - 1));
      return random() < 0.5 ? children : Object.fromEntries(children.map((child, i) => [`k${i}${tricky[i]}`, child]));
    };
    for (let i = 0; i < 500; i++) {
      const value = build(1 + Math.floor(random() * 8));
      const text = JSON.stringify(value);
      assert.equal(jsonTextDepth(Buffer.from(text)), depthOf(value), text);
    }
  });

  test('a frame nested deep only outside its response passes (the scan only decides when to walk)', async () => {
    const guest = fakeGuest();
    const pending = invoke(guest.channel);
    const deepExtra = JSON.parse(`${'['.repeat(3000)}${']'.repeat(3000)}`);
    guest.send({ id: 1, ok: true, result: invokeResult({ extra: deepExtra, response: { shallow: [1, 2] } }) });
    const result = await pending;
    assert.equal(result.status, 'success');
    assert.deepEqual(result.response, { shallow: [1, 2] });
  });

  test('the answer splices a measured response in, byte for byte what JSON.stringify would write', async () => {
    const guest = fakeGuest();
    const big = Array.from({ length: 40_000 }, (_, i) => ({ i, name: `item-${i}`, text: 'é"\\\n🚀' }));
    const small = { a: [1, 'two', null] };
    const results = [invoke(guest.channel), invoke(guest.channel)];
    guest.send({ id: 1, ok: true, result: invokeResult({ response: big }) });
    guest.send({ id: 2, ok: true, result: invokeResult({ response: small }) });
    const [measured, unmeasured] = await Promise.all(results);
    assert.ok(measuredJson(measured!.response) !== undefined, 'a large response was measured');
    assert.equal(measuredJson(unmeasured!.response), undefined, 'a small frame is not');
    for (const { status, duration_ms, response, logs, error, version } of [measured!, unmeasured!]) {
      const answer = { request_id: 'r', status, duration_ms, response, logs, error, cold_start: false, version }; // as the service builds it
      assert.ok(answerJson(answer) === JSON.stringify(answer), 'the answer differs from JSON.stringify');
    }
  });
});

describe('console ring', () => {
  test('keeps the last capacity bytes of any amount written', () => {
    const ring = new ConsoleRing(1000);
    for (let i = 0; i < 100; i++) ring.push(Buffer.from(`${String(i).padStart(3, '0')}:${'.'.repeat(95)}\n`));
    assert.equal(ring.received, 10_000);
    assert.equal(ring.size, 1000);
    const tail = ring.tail(5000);
    assert.equal(tail.length, 1000);
    assert.ok(tail.startsWith('090:') && tail.endsWith('099:' + '.'.repeat(95) + '\n'));
    ring.push(Buffer.alloc(5000, 'z'));
    assert.equal(ring.tail(10), 'z'.repeat(10));
    assert.equal(ring.size, 1000);
  });

  test('a flood of one-byte chunks (a UART) keeps exactly the last bytes, in order, in the preallocated ring', () => {
    const ring = new ConsoleRing(4096);
    const text = Array.from({ length: 20_000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    for (const char of text) ring.push(Buffer.from(char));
    assert.equal(ring.size, 4096);
    assert.equal(ring.tail(4096), text.slice(-4096));
    assert.equal(ring.tail(7), text.slice(-7));
  });
});

describe('QMP client', () => {
  async function qmpPair(): Promise<{ client: QmpClient; qemu: Socket; cleanup: () => void }> {
    const dir = mkdtempSync(join(tmpdir(), 'fnvm-qmp-'));
    const path = join(dir, 'qmp.sock');
    const server = createServer();
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const socket = connect(path);
    const qemu = await accepted;
    return {
      client: new QmpClient(socket),
      qemu,
      cleanup: () => {
        socket.destroy();
        qemu.destroy();
        server.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  test('a line that is not JSON fails pending commands instead of throwing', async () => {
    const { client, qemu, cleanup } = await qmpPair();
    try {
      const pending = client.execute('query-status');
      qemu.write('{"QMP": {}}\n{not json\n');
      await assert.rejects(pending, (error: unknown) => error instanceof QmpError && /not a JSON object/.test(error.message));
      await assert.rejects(client.execute('cont'), QmpError);
    } finally {
      cleanup();
    }
  });

  test(`a line longer than ${maxQmpLineChars} characters fails the connection`, async () => {
    const { client, qemu, cleanup } = await qmpPair();
    try {
      const pending = client.execute('query-status');
      qemu.write('x'.repeat(maxQmpLineChars + 10));
      await assert.rejects(pending, (error: unknown) => error instanceof QmpError && /without a newline/.test(error.message));
    } finally {
      cleanup();
    }
  });
});

describe('request batching', () => {
  test('requests made in one turn of the event loop leave in one write; a later one in its own', async () => {
    const writes: number[] = []; // frames per underlying write
    const decoder = new FrameDecoder();
    const ids: number[] = [];
    const stream = new Duplex({
      read() {},
      writev(chunks, done) {
        writes.push(chunks.length);
        for (const { chunk } of chunks) for (const f of decoder.push(Buffer.from(chunk))) ids.push((f as { id: number }).id);
        done();
      },
      write(chunk: Buffer, _encoding, done) {
        writes.push(1);
        for (const f of decoder.push(chunk)) ids.push((f as { id: number }).id);
        done();
      },
    });
    const channel = new GuestChannel(stream);
    for (let i = 0; i < 10; i++) void invoke(channel).catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, [10], 'ten frames, one write');
    void invoke(channel).catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, [10, 1]);
    assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 'every frame arrives whole, in order');
    channel.close();
  });
});

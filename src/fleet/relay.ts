// One HTTP/1.1 exchange with another host, relayed into the client's response: the request head is written as
// given, the body streamed as it arrives, and the answer parsed (http-parser-js) only to frame it, its body written
// on as it comes. Node's http client does the same with a ClientRequest, an IncomingMessage and an agent per
// request; here that was a third of a forwarded invoke's extra hop (bench/fleet.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { HTTPParser } from 'http-parser-js';

// Header bytes as they are, as Node reads and writes them (its default, 'ascii', would drop the high bit).
HTTPParser.encoding = 'latin1';

/** A kept-alive connection unused this long is closed (well inside Node's and Fastify's keep-alive timeouts). */
const idleMs = 4_000;
const maxIdle = 64;

/** Connections to one host: a new request takes the one used last, or opens one. */
export class HostConnections {
  /** Idle connections, the last used last, each with what closes it (also on anything the host sends meanwhile). */
  private readonly idle: { socket: Socket; drop: () => void }[] = [];
  private closed = false;

  constructor(private readonly host: string, private readonly port: number, private readonly connectTimeoutMs: number) {}

  take(): Socket {
    for (let kept = this.idle.pop(); kept; kept = this.idle.pop()) {
      const { socket, drop } = kept;
      socket.off('data', drop).off('end', drop).off('close', drop).off('error', drop).off('timeout', drop).setTimeout(0);
      if (socket.readyState === 'open') return socket; // not one the host has half closed
    }
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    const late = () => socket.destroy(new Error(`no connection within ${this.connectTimeoutMs} ms`));
    socket.setTimeout(this.connectTimeoutMs).once('timeout', late).once('connect', () => socket.setTimeout(0).off('timeout', late));
    return socket;
  }

  /** Back for the next request: the exchange's listeners are off it and it carries nothing more of that one. */
  give(socket: Socket): void {
    if (this.closed || this.idle.length >= maxIdle || socket.destroyed) {
      socket.destroy();
      return;
    }
    const drop = () => {
      const at = this.idle.findIndex((entry) => entry.socket === socket);
      if (at >= 0) this.idle.splice(at, 1);
      socket.destroy();
    };
    socket.on('data', drop).on('end', drop).on('close', drop).on('error', drop).setTimeout(idleMs).on('timeout', drop);
    this.idle.push({ socket, drop });
  }

  close(): void {
    this.closed = true;
    for (const { socket } of this.idle.splice(0)) socket.destroy();
  }
}

/** How a request's body goes: none, as received (Content-Length), or chunked again (it came chunked). */
export type Framing = 'none' | 'sized' | 'chunked';

export function framingOf(incoming: IncomingMessage): Framing {
  if (incoming.headers['content-length'] !== undefined) return 'sized';
  return incoming.headers['transfer-encoding'] !== undefined ? 'chunked' : 'none';
}

export interface Exchange {
  connections: HostConnections;
  /** The request line and headers, ending with the empty line. */
  head: string;
  body: Framing;
  /** The answer's headers as the client gets them (flat name, value list, as received). */
  headersOut: (raw: string[]) => string[];
  /** No answer will come: nothing was written to the client yet. */
  noAnswer: (reason: string) => void;
  /** The answer's status, as its head arrives. */
  answered: (status: number) => void;
}

type Phase = 'waiting' | 'answering' | 'done';

/** Sends `incoming` (its body unread) and writes the answer to `res`; failures go to `noAnswer` or cut `res`. */
export function relay(incoming: IncomingMessage, res: ServerResponse, exchange: Exchange): void {
  const socket = exchange.connections.take();
  let phase: Phase = 'waiting';
  let keepAlive = false;
  let informational = false;
  let bodyWritten = false;
  let waitingForClient = false;
  const parser = new HTTPParser(HTTPParser.RESPONSE);
  const sending = sendRequest(incoming, socket, exchange.head, exchange.body);

  const fail = (reason: string) => {
    if (phase === 'done') return;
    const was = phase;
    phase = 'done';
    socket.destroy();
    sending.stop();
    if (was === 'waiting') exchange.noAnswer(reason);
    else res.destroy(); // mid-answer: the client sees it cut short, not a clean end
  };
  const onData = (data: Buffer) => {
    const parsed = parser.execute(data);
    if (parsed instanceof Error) fail(`sent a malformed answer: ${parsed.message}`);
    // An answer with no body yet (an event stream): its head goes now, so that the client sees it open.
    else if (phase === 'answering' && !bodyWritten) res.flushHeaders();
  };
  const hangUp = () => fail('is unreachable: socket hang up (it closed the connection without answering)');
  const onEnd = () => {
    if (phase === 'answering') parser.finish(); // a body that lasts until the connection closes ends here
    hangUp();
  };
  const onError = (error: Error) => fail(`is unreachable: ${error.message}`);
  const onClientDrain = () => {
    waitingForClient = false;
    socket.resume();
  };
  socket.on('data', onData).on('end', onEnd).on('error', onError).on('close', hangUp);

  parser[HTTPParser.kOnHeadersComplete] = (info) => {
    if (phase !== 'waiting') {
      socket.destroy(); // a second answer to one request: the host is out of step, and its connection unusable
      return 1;
    }
    if (info.statusCode >= 100 && info.statusCode < 200) {
      informational = true; // 100 Continue and the like: the answer is still to come
      return 1;
    }
    const unfit = writeHead(res, info.statusCode, info.statusMessage, exchange.headersOut(info.headers));
    if (unfit !== undefined) {
      fail(`sent a head this host cannot pass on: ${unfit}`);
      return 1;
    }
    exchange.answered(info.statusCode);
    phase = 'answering';
    keepAlive = info.shouldKeepAlive;
    return incoming.method === 'HEAD' || info.statusCode === 204 || info.statusCode === 304 ? 1 : 0;
  };
  parser[HTTPParser.kOnBody] = (chunk, offset, length) => {
    if (phase !== 'answering') return;
    bodyWritten = true;
    if (!res.write(chunk.subarray(offset, offset + length)) && !waitingForClient) {
      waitingForClient = true; // the client reads slower than the host sends: the host waits for it
      socket.pause();
      res.once('drain', onClientDrain);
    }
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    if (informational) {
      informational = false;
      return;
    }
    if (phase !== 'answering') return;
    phase = 'done';
    res.end();
    res.off('drain', onClientDrain);
    socket.off('data', onData).off('end', onEnd).off('error', onError).off('close', hangUp).resume();
    // Reusable if the host keeps it open, has the whole request, and sent nothing after this answer.
    if (keepAlive && sending.done() && !parsingBeyondTheAnswer(parser)) exchange.connections.give(socket);
    else {
      socket.destroy();
      sending.stop();
    }
  };
  res.on('close', () => {
    if (phase !== 'done') fail('the client went away'); // the request to the owner goes with it
  });
}

/**
 * Writes the answer's head, or says why Node would not send it (the parser lets through what Node refuses) and
 * leaves `res` as it was, so that the refusal goes out clean. Its headers replace any of those names set already
 * (CORS, by an earlier hook), repeated ones (Set-Cookie) kept apart: writeHead with the list would merge them one
 * name at a time, keeping only the last. appendHeader checks each name and value, once.
 */
function writeHead(res: ServerResponse, status: number, message: string, raw: string[]): string | undefined {
  if (!Number.isInteger(status) || status < 200 || status > 999) return `status ${status}`;
  if (/[^\t\x20-\x7e\x80-\xff]/.test(message)) return 'a control character in the status message';
  const before = res.getHeaderNames().length === 0 ? undefined : res.getHeaders();
  try {
    for (let i = 0; i < raw.length; i += 2) res.removeHeader(raw[i] ?? '');
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] ?? '';
      // The parser let a repeated, equal Content-Length through; a client must see it once.
      if (name.toLowerCase() !== 'content-length' || !res.hasHeader(name)) res.appendHeader(name, raw[i + 1] ?? '');
    }
  } catch (error) {
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    for (const [name, value] of Object.entries(before ?? {})) if (value !== undefined) res.setHeader(name, value);
    return error instanceof Error ? error.message : String(error);
  }
  res.writeHead(status, message);
  return undefined;
}

/**
 * Whether the data being parsed goes on past the answer just completed (a host out of step). http-parser-js keeps
 * its position in fields of its own: `offset` and `end` of the chunk under way, read here as what they are.
 */
function parsingBeyondTheAnswer(parser: object): boolean {
  const offset: unknown = Reflect.get(parser, 'offset');
  const end: unknown = Reflect.get(parser, 'end');
  return typeof offset !== 'number' || typeof end !== 'number' || offset < end;
}

/**
 * Writes the head and streams the body, held back by the socket; a small body goes in one packet with the head.
 * `done`: the whole body is written; `stop`: no more of it is sent (the rest is read and dropped).
 */
function sendRequest(incoming: IncomingMessage, socket: Socket, head: string, body: Framing): { done: () => boolean; stop: () => void } {
  let ended = false;
  const onData = (chunk: Buffer) => {
    let more: boolean;
    if (body === 'chunked') {
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      more = socket.write('\r\n');
    } else more = socket.write(chunk);
    if (socket.writableCorked) socket.uncork();
    if (!more) {
      incoming.pause();
      socket.once('drain', () => incoming.resume());
    }
  };
  const onEnd = () => {
    ended = true;
    if (body === 'chunked') socket.write('0\r\n\r\n');
    if (socket.writableCorked) socket.uncork();
  };
  if (body === 'none') {
    socket.write(head, 'latin1');
    ended = true;
  } else {
    socket.cork();
    socket.write(head, 'latin1');
    incoming.on('data', onData).on('end', onEnd);
  }
  incoming.resume();
  return {
    done: () => ended,
    stop: () => {
      incoming.off('data', onData).off('end', onEnd);
      incoming.resume();
    },
  };
}

// Forwarding a request to the host that holds its function: the body streams both ways unbuffered, status and
// end-to-end headers pass unchanged, and a failure is a prompt 503 or an aborted response, never a hang.
import { Agent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders, type RequestOptions, type ServerResponse } from 'node:http';
import { urlToHttpOptions } from 'node:url';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clusterSecretHeader, secretMatcher } from './cluster-secret.js';

/** Set by the forwarding host (with the cluster secret): the owner knows it was forwarded; it never goes further. */
export const forwardedByHeader = 'x-fnvm-forwarded-by';
/**
 * Set with it: the address the forwarding host received the request from, for the owner's logs. A header of the
 * fleet's own rather than X-Forwarded-For, which the client's SigV4 signature may cover and so must pass unchanged.
 */
export const forwardedForHeader = 'x-fnvm-forwarded-for';

export interface ForwardTarget {
  /** The owner's host id (named in errors). */
  id: string;
  /** Its base URL, e.g. `http://10.0.0.2:18080`: the request's path and query are appended. */
  url: string;
}

export interface ForwarderOptions {
  /** This host's id, sent in x-fnvm-forwarded-by. */
  hostId: string;
  /** FNVM_CLUSTER_SECRET (checkClusterSecret). */
  secret: string;
  /** A host that does not accept the connection by then is unreachable (default 1500 ms). */
  connectTimeoutMs?: number;
}

/** Which host the request was forwarded by, when it carries a valid cluster secret; a client cannot fake it. */
export type ForwardedBy = (request: FastifyRequest) => string | undefined;

/** The client of a forwarded request, and the host that forwarded it. */
export interface ForwardedClient {
  address: string;
  host: string;
}

// Meaningful for one connection only (RFC 9110 7.6.1), plus: `expect`, which this host's server already answered
// (Node sends 100 Continue itself), and the fleet's own headers, which a client must not be able to smuggle in.
const dropped = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', clusterSecretHeader, forwardedByHeader, forwardedForHeader]);

function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = headers.connection?.toLowerCase().split(',').map((name) => name.trim()) ?? [];
  const kept: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !dropped.has(name) && !name.startsWith('proxy-') && !named.includes(name)) kept[name] = value;
  }
  return kept;
}

/** Writes the 503 of a request this host could not forward, in the error format of the API it came to. */
export type Refusal = (res: ServerResponse, message: string) => void;

/** fnvm's own API: `{"error": "..."}`. */
export const jsonRefusal: Refusal = (res, message) => {
  const text = JSON.stringify({ error: message });
  res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

export interface ForwardHooks {
  /** Hears of a target that could not be reached or answered 503 (it may not hold the function any more). */
  failed?: () => void;
  /** How a refusal is written (default jsonRefusal). */
  refusal?: Refusal;
}

export class Forwarder {
  // Keep-alive: a forwarded request usually finds a connection open, which keeps the extra hop well under 1 ms.
  private readonly agent = new Agent({ keepAlive: true, scheduling: 'lifo', noDelay: true });
  private readonly connectTimeoutMs: number;
  private readonly bases = new Map<string, { options: RequestOptions; path: string }>();
  readonly forwardedBy: ForwardedBy;

  constructor(private readonly options: ForwarderOptions) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1500;
    const isSecret = secretMatcher(options.secret);
    this.forwardedBy = (request) => {
      const by = request.headers[forwardedByHeader];
      return typeof by === 'string' && isSecret(request.headers[clusterSecretHeader]) ? by : undefined;
    };
  }

  /**
   * An onRequest hook that forwards the requests `ownerOf` gives a target for (a remote owner) and lets the others
   * through. onRequest runs before Fastify reads the body, so the body streams to the owner untouched.
   */
  hook(ownerOf: (request: FastifyRequest) => ForwardTarget | undefined | Promise<ForwardTarget | undefined>): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
    return async (request, reply) => {
      const target = await ownerOf(request);
      if (target) this.forward(request, reply, target);
    };
  }

  /**
   * Answers the request with the target's answer. Takes the reply over (hijack), so the caller must not send;
   * the body must still be unread: call it from an onRequest hook (see hook()) or a route whose content-type
   * parser hands the payload stream through. A request another host already forwarded gets 503, not a second hop.
   */
  forward(request: FastifyRequest, reply: FastifyReply, target: ForwardTarget, { failed, refusal = jsonRefusal }: ForwardHooks = {}): void {
    const incoming = request.raw;
    if (incoming.readableFlowing !== null) throw new Error('forward() needs the request body unread: call it from an onRequest hook');
    reply.hijack();
    const res = reply.raw;
    // Headers this host set already (CORS from an earlier hook): kept unless the owner sends its own.
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) res.setHeader(name, value);
    }
    // Nobody reads the body once we answer ourselves: drain it, so the client gets to read the answer.
    const refuse = (error: string) => {
      incoming.unpipe();
      incoming.resume();
      refusal(res, error);
    };
    const from = this.forwardedBy(request);
    if (from !== undefined) {
      refuse(`host ${this.options.hostId} does not hold this function and the request was already forwarded by host ${from}: not forwarding it again`);
      return;
    }
    let answered = false;
    const unreachable = (error: Error) => {
      if (answered || res.destroyed) return; // after the head the response's close handles it; a gone client needs nothing
      answered = true;
      failed?.();
      refuse(`host ${target.id} at ${target.url} is unreachable: ${error.message}`);
    };
    let upstream: ClientRequest;
    try {
      upstream = this.request(request, target);
    } catch (error) {
      unreachable(error instanceof Error ? error : new Error(String(error))); // a target URL we cannot use
      return;
    }
    upstream.on('error', unreachable);
    upstream.on('socket', (socket) => {
      if (!socket.connecting) return; // a kept-alive connection
      const timer = setTimeout(() => upstream.destroy(new Error(`no connection within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(timer));
      upstream.once('close', () => clearTimeout(timer));
    });
    upstream.on('response', (answer) => {
      answered = true;
      if (answer.statusCode === 503) failed?.();
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
      // The head goes out with the first chunk of body; if none is there yet (an event stream), on its own, so
      // that an EventSource opens at once. Writing it always would cost a packet on every small answer.
      setImmediate(() => {
        if (!res.writableEnded && !res.destroyed) res.flushHeaders();
      });
      // An owner that dies mid-answer destroys the response: the client sees it cut short. (pipe, not pipeline:
      // pipeline makes an AbortController and an AbortError with its stack per request, a tenth of the hop's CPU.)
      answer.once('close', () => {
        if (!answer.complete) res.destroy();
      });
      answer.pipe(res);
    });
    // The client went away before its answer was complete: so does the request to the owner.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    incoming.pipe(upstream);
  }

  private request(request: FastifyRequest, target: ForwardTarget): ClientRequest {
    const base = this.base(target.url);
    const headers = endToEnd(request.headers);
    headers[clusterSecretHeader] = this.options.secret;
    headers[forwardedByHeader] = this.options.hostId;
    headers[forwardedForHeader] = request.raw.socket.remoteAddress ?? 'unknown';
    // The path and query as received, byte for byte. Host stays the client's: SigV4 signatures cover it.
    return httpRequest({ ...base.options, agent: this.agent, method: request.method, path: base.path + request.url, headers });
  }

  /** The client a forwarding host received the request from, believed only with the cluster secret; else undefined. */
  clientOf(request: FastifyRequest): ForwardedClient | undefined {
    const host = this.forwardedBy(request);
    const address = request.headers[forwardedForHeader];
    return host !== undefined && typeof address === 'string' && address !== '' ? { address, host } : undefined;
  }

  /** A host's URL, parsed once (there are only as many as hosts). */
  private base(url: string): { options: RequestOptions; path: string } {
    let base = this.bases.get(url);
    if (!base) {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:') throw new Error(`unsupported protocol ${parsed.protocol}`);
      base = { options: urlToHttpOptions(parsed), path: parsed.pathname.replace(/\/$/, '') };
      if (this.bases.size >= 1024) this.bases.clear();
      this.bases.set(url, base);
    }
    return base;
  }

  /** Closes the kept-alive connections (and any forwarded request still running). */
  close(): void {
    this.agent.destroy();
  }
}

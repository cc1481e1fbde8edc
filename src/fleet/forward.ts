// Forwarding a request to the host that holds its function: the body streams both ways unbuffered, status and
// end-to-end headers pass unchanged, and a failure is a prompt 503 or an aborted response, never a hang.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { clusterSecretHeader, secretMatcher } from './cluster-secret.js';
import { framingOf, HostConnections, relay, type Exchange, type Framing } from './relay.js';

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
export type ForwardedBy = (request: { headers: IncomingHttpHeaders }) => string | undefined;

/** The client of a forwarded request, and the host that forwarded it. */
export interface ForwardedClient {
  address: string;
  host: string;
}

// Meaningful for one connection only (RFC 9110 7.6.1), plus: `expect`, which this host's server already answered
// (Node sends 100 Continue itself), and the fleet's own headers, which a client must not be able to smuggle in.
const dropped = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', clusterSecretHeader, forwardedByHeader, forwardedForHeader]);

/** The end-to-end headers of a flat name, value list (rawHeaders), in their order and case. */
function endToEnd(raw: string[]): string[] {
  const connection: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'connection') connection.push(...(raw[i + 1] ?? '').toLowerCase().split(',').map((name) => name.trim()));
  const kept: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (!dropped.has(lower) && !lower.startsWith('proxy-') && !connection.includes(lower)) kept.push(name, raw[i + 1] ?? '');
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

/** A host requests are forwarded to: its connections, the path its URL puts first, and its host:port. */
interface Host {
  connections: HostConnections;
  path: string;
  authority: string;
}

export class Forwarder {
  private readonly connectTimeoutMs: number;
  /** Each host's connections and the path its URL puts before the request's (there are only as many as hosts). */
  private readonly hosts = new Map<string, Host>();
  private closed = false;
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
   * parser hands the payload stream through.
   */
  forward(request: FastifyRequest, reply: FastifyReply, target: ForwardTarget, hooks: ForwardHooks = {}): void {
    if (request.raw.readableFlowing !== null) throw new Error('forward() needs the request body unread: call it from an onRequest hook');
    reply.hijack();
    // Headers this host set already (CORS from an earlier hook): kept unless the owner sends its own.
    for (const [name, value] of Object.entries(reply.getHeaders())) {
      if (value !== undefined) reply.raw.setHeader(name, value);
    }
    this.forwardRaw(request.raw, reply.raw, target, hooks);
  }

  /**
   * The same for a request no framework has touched (its body unread). A request another host already forwarded
   * gets 503, not a second hop; so does one the target does not answer, promptly.
   */
  forwardRaw(incoming: IncomingMessage, res: ServerResponse, target: ForwardTarget, { failed, refusal = jsonRefusal }: ForwardHooks = {}): void {
    const refuse = (message: string) => {
      incoming.resume(); // nobody reads the body once we answer ourselves: drained, so the client reads the answer
      refusal(res, message);
    };
    const from = this.forwardedBy(incoming);
    if (from !== undefined) {
      refuse(`host ${this.options.hostId} does not hold this function and the request was already forwarded by host ${from}: not forwarding it again`);
      return;
    }
    const noAnswer = (reason: string) => {
      if (res.destroyed) return; // a client that went away needs no answer
      failed?.();
      refuse(`host ${target.id} at ${target.url} ${reason}`);
    };
    let host: Host;
    try {
      host = this.host(target.url);
    } catch (error) {
      noAnswer(`is unreachable: ${error instanceof Error ? error.message : String(error)}`); // a URL we cannot use
      return;
    }
    const body = framingOf(incoming);
    relay(incoming, res, {
      connections: host.connections,
      head: this.head(incoming, host, body),
      body,
      headersOut: endToEnd,
      noAnswer,
      answered: (status) => {
        if (status === 503) failed?.();
      },
    } satisfies Exchange);
  }

  /**
   * The request line and headers for the owner: the path and query as received, byte for byte (the host's URL
   * path before them), the end-to-end headers as the client sent them (Host too: SigV4 signatures cover it),
   * then the fleet's own. Node's parser has refused any CR or LF in them already.
   */
  private head(incoming: IncomingMessage, host: Host, body: Framing): string {
    const headers = endToEnd(incoming.rawHeaders);
    let head = `${incoming.method ?? 'GET'} ${host.path}${incoming.url ?? '/'} HTTP/1.1\r\n`;
    for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    if (incoming.headers.host === undefined) head += `host: ${host.authority}\r\n`; // an HTTP/1.0 client's request
    if (body === 'chunked') head += 'transfer-encoding: chunked\r\n'; // the client's (hop by hop) was dropped
    return `${head}${clusterSecretHeader}: ${this.options.secret}\r\n${forwardedByHeader}: ${this.options.hostId}\r\n${forwardedForHeader}: ${incoming.socket.remoteAddress ?? 'unknown'}\r\n\r\n`;
  }

  /** The client a forwarding host received the request from, believed only with the cluster secret; else undefined. */
  clientOf(request: FastifyRequest): ForwardedClient | undefined {
    const host = this.forwardedBy(request);
    const address = request.headers[forwardedForHeader];
    return host !== undefined && typeof address === 'string' && address !== '' ? { address, host } : undefined;
  }

  /** A host's connections, made on first use (there are only as many as hosts, unless URLs keep changing). */
  private host(url: string): Host {
    if (this.closed) throw new Error('this host is shutting down');
    let host = this.hosts.get(url);
    if (!host) {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:') throw new Error(`unsupported protocol ${parsed.protocol}`);
      const port = parsed.port === '' ? 80 : Number(parsed.port);
      if (this.hosts.size >= 1024) this.closeConnections();
      const connections = new HostConnections(parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port, this.connectTimeoutMs);
      host = { connections, path: parsed.pathname.replace(/\/$/, ''), authority: parsed.host };
      this.hosts.set(url, host);
    }
    return host;
  }

  /** Closes the kept-alive connections; requests forwarded from now on get 503. */
  close(): void {
    this.closed = true;
    this.closeConnections();
  }

  private closeConnections(): void {
    for (const { connections } of this.hosts.values()) connections.close();
    this.hosts.clear();
  }
}

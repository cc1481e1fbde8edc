// Optional bearer-token access control for the API (FNVM_API_TOKEN). The console's static files stay public;
// EventSource cannot send headers, so event streams also accept ?access_token= (kept out of logs: redact.ts).
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function requireToken(app: FastifyInstance, token: string): void {
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'OPTIONS' || !(request.url.startsWith('/v1/') || isPath(request.url, '/metrics'))) return;
    const header = request.headers.authorization ?? '';
    const fromHeader = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    const url = new URL(request.url, 'http://x');
    const fromQuery = isEventStream(url) ? url.searchParams.get('access_token') ?? '' : '';
    if (sameSecret(fromHeader || fromQuery, token)) return;
    return reply.status(401).header('www-authenticate', 'Bearer').send({ error: 'missing or invalid bearer token' });
  });
}

function isPath(url: string, path: string): boolean {
  return url === path || url.startsWith(`${path}?`);
}

/** The streams a browser opens with EventSource: events, and a function's logs when followed. */
function isEventStream(url: URL): boolean {
  return url.pathname.endsWith('/events') || (url.pathname.endsWith('/logs') && url.searchParams.get('follow') === 'true');
}

const loopback = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Binding beyond loopback exposes VMs that run arbitrary code: only with a token. */
export function checkExposure(host: string, token: string | undefined): void {
  if (!loopback.test(host) && !token) {
    throw new Error(`refusing to listen on ${host} without FNVM_API_TOKEN: set a token or bind to 127.0.0.1`);
  }
}

// Optional bearer-token access control for the API (FNVM_API_TOKEN). The console's static files stay public;
// EventSource cannot send headers, so event streams also accept ?access_token= (kept out of logs: redact.ts).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { secretMatcher } from '../fleet/cluster-secret.js';

export function requireToken(app: FastifyInstance, token: string): void {
  const matches = secretMatcher(token); // constant time, whatever the length given
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'OPTIONS' || !isGuarded(request)) return;
    const header = request.headers.authorization ?? '';
    const fromHeader = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    const url = new URL(request.url, 'http://x');
    const fromQuery = isEventStream(url, request.routeOptions.url) ? url.searchParams.get('access_token') ?? '' : '';
    if (matches(fromHeader || fromQuery)) return;
    return reply.status(401).header('www-authenticate', 'Bearer').send({ error: 'missing or invalid bearer token' });
  });
}

/**
 * The API and /metrics. The router matches percent-decoded paths (/%761/functions reaches /v1/functions), so the
 * route it matched counts as well as the URL as sent.
 */
function isGuarded(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return request.url.startsWith('/v1/') || isPath(request.url, '/metrics') || (route !== undefined && (route.startsWith('/v1/') || route === '/metrics'));
}

function isPath(url: string, path: string): boolean {
  return url === path || url.startsWith(`${path}?`);
}

/** The streams a browser opens with EventSource: events, and a function's logs when followed. */
function isEventStream(url: URL, route: string | undefined): boolean {
  const path = route ?? url.pathname;
  return path.endsWith('/events') || (path.endsWith('/logs') && url.searchParams.get('follow') === 'true');
}

const loopback = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Binding beyond loopback exposes VMs that run arbitrary code: only with a token. */
export function checkExposure(host: string, token: string | undefined): void {
  if (!loopback.test(host) && !token) {
    throw new Error(`refusing to listen on ${host} without FNVM_API_TOKEN: set a token or bind to 127.0.0.1`);
  }
}

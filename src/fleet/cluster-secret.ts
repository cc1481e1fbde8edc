// FNVM_CLUSTER_SECRET: what the hosts of a fleet show each other. It travels as is in a header (hosts talk over
// loopback or a private network, like the database connection) and is compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

export const clusterSecretHeader = 'x-fnvm-cluster-secret';
export const minClusterSecretLength = 16;

/** The fleet's secret from the environment, or why a fleet must not start with it. */
export function checkClusterSecret(secret: string | undefined): string {
  const advice = `at least ${minClusterSecretLength} characters, the same on every host (e.g. \`openssl rand -hex 32\`)`;
  if (!secret) throw new Error(`a fleet needs FNVM_CLUSTER_SECRET to authenticate its hosts to each other: ${advice}`);
  if (secret.length < minClusterSecretLength) throw new Error(`FNVM_CLUSTER_SECRET is too short (${secret.length} characters): ${advice}`);
  // It is sent in a header: Node refuses control characters there, and spaces would be trimmed on the way.
  if (!/^[\x21-\x7e]+$/.test(secret)) throw new Error('FNVM_CLUSTER_SECRET must be printable ASCII without spaces (it is sent in an HTTP header)');
  return secret;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * A test for `secret` that takes the same time whatever it is given: both sides are hashed to 32 bytes first, so
 * neither the secret's length nor a matching prefix shows in the timing (the expected digest is computed once).
 */
export function secretMatcher(secret: string): (given: string | string[] | undefined) => boolean {
  const expected = digest(secret);
  return (given) => typeof given === 'string' && timingSafeEqual(digest(given), expected);
}

/** Routes under `prefix` (the fleet's internal API) answer 401 unless the request carries the cluster secret. */
export function requireClusterSecret(app: FastifyInstance, secret: string, prefix = '/internal'): void {
  const matches = secretMatcher(secret);
  const under = (path: string | undefined) => path !== undefined && (path === prefix || path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}?`));
  app.addHook('onRequest', async (request, reply) => {
    // The router matches percent-decoded paths (/%69nternal/x reaches /internal/x): the matched route counts too.
    if (!under(request.url) && !under(request.routeOptions.url)) return;
    if (matches(request.headers[clusterSecretHeader])) return;
    return reply.status(401).send({ error: `internal route: missing or invalid ${clusterSecretHeader} (FNVM_CLUSTER_SECRET)` });
  });
}

// GET /v1/hosts: the hosts that serve this API (one, or every host of the fleet) and what each holds.
import type { FastifyInstance } from 'fastify';
import type { HostView } from '../fleet/registry.js';

export function hostsRoutes(hosts: () => Promise<HostView[]>) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/v1/hosts', async () => ({ items: await hosts() }));
  };
}

// The web console: the production build in web/dist, served at / with a single-page-app fallback.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { repoRoot } from '../paths.js';
import { redactUrl } from './redact.js';

export const webDist = join(repoRoot, 'web', 'dist');

export async function webConsole(app: FastifyInstance): Promise<void> {
  if (!existsSync(join(webDist, 'index.html'))) {
    app.get('/', async () => ({ error: 'the web console is not built: run npm run build' }));
    return;
  }
  await app.register(fastifyStatic, { root: webDist, prefix: '/', wildcard: false });
  // Client-side routes (/functions/abc) get the app; unknown API paths keep their JSON 404.
  app.get('/*', async (request, reply) => {
    if (request.url.startsWith('/v1/')) return reply.status(404).send({ error: `no route GET ${redactUrl(request.url)}` });
    return reply.sendFile('index.html');
  });
}

// /v1/functions: the endpoints of functions-api.md. HTTP only; the domain does the work.
import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { answerJson } from '../functions/answer.js';
import { invalid, tooLarge } from '../functions/errors.js';
import { nestsDeeperThan } from '../json-depth.js';
import type { FunctionInput, FunctionService } from '../functions/service.js';
import { bodyLimitBytes, definitionBodyLimitBytes } from './limits.js';
import { followInvocations } from './logs-stream.js';
import { createBody, redriveBody, updateBody } from './schemas.js';
import type { OnRequest } from './server.js';
import { EventStreams } from './sse.js';

type IdParams = { Params: { id: string } };

/** `toOwner`: in a fleet, the hook that sends requests about another host's function there. */
export function functionsRoutes(service: FunctionService, toOwner?: OnRequest) {
  return async (app: FastifyInstance): Promise<void> => {
    if (toOwner) app.addHook('onRequest', toOwner);
    const streams = new EventStreams(app);
    const definition = { bodyLimit: definitionBodyLimitBytes, preHandler: onlyPackagesAreLarge };
    app.post<{ Body: FunctionInput }>('/v1/functions', { schema: { body: createBody }, ...definition }, async (request) => {
      const record = await service.create(request.body);
      return { id: record.id };
    });

    app.get('/v1/functions', async () => ({ items: await service.listAll() }));

    app.get<IdParams>('/v1/functions/:id', async (request) => ({ item: service.get(request.params.id) }));

    app.put<IdParams & { Body: FunctionInput }>('/v1/functions/:id', { schema: { body: updateBody }, ...definition }, async (request) => ({
      item: await service.update(request.params.id, request.body),
    }));

    app.get<IdParams>('/v1/functions/:id/package', async (request, reply) => {
      const { path, info, name } = service.packageZip(request.params.id);
      return reply
        .type('application/zip')
        .header('content-disposition', `attachment; filename="${name}.zip"`)
        .header('etag', `"${info.sha256}"`)
        .send(createReadStream(path));
    });

    app.get<IdParams>('/v1/functions/:id/package/files', async (request) => ({ files: await service.packageFiles(request.params.id) }));

    // One file of the package (the console shows it); `*` takes the rest of the path, slashes included.
    app.get<IdParams & { Params: { '*': string } }>('/v1/functions/:id/package/files/*', async (request, reply) => {
      const content = await service.packageFile(request.params.id, request.params['*']);
      return reply.type('application/octet-stream').header('x-content-type-options', 'nosniff').send(content);
    });

    app.delete<IdParams>('/v1/functions/:id', async (request) => {
      await service.delete(request.params.id);
      return { message: 'Function deleted' };
    });

    app.post<IdParams & { Body: unknown }>('/v1/functions/:id/invoke', async (request, reply) => {
      if (respondAsync(request.headers.prefer)) {
        const { request_id } = await service.invokeAsync(request.params.id, eventOf(request.body));
        return reply.status(202).header('preference-applied', 'respond-async').send({ request_id, status: 'queued' });
      }
      const answer = await service.invoke(request.params.id, eventOf(request.body));
      return reply.type('application/json; charset=utf-8').send(answerJson(answer));
    });

    app.get<IdParams>('/v1/functions/:id/queue', async (request) => service.queueFigures(request.params.id));

    app.get<IdParams & { Querystring: Record<string, string | undefined> }>('/v1/functions/:id/dead-letters', async (request) => {
      const limit = queryInt(request.query.limit, 'limit', 100, 1, 1000);
      const offset = queryInt(request.query.offset, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
      return service.deadLetters(request.params.id, limit, offset);
    });

    app.post<IdParams & { Body: { request_ids?: string[] } | undefined }>('/v1/functions/:id/dead-letters/redrive', { schema: { body: redriveBody } }, async (request) => ({
      redriven: await service.redrive(request.params.id, request.body?.request_ids),
    }));

    app.delete<IdParams & { Params: { requestId: string } }>('/v1/functions/:id/dead-letters/:requestId', async (request) => {
      await service.discardDeadLetter(request.params.id, request.params.requestId);
      return { message: 'Dead letter deleted' };
    });

    app.get<IdParams & { Querystring: Record<string, string | undefined> }>('/v1/functions/:id/logs', async (request, reply) => {
      if (isFollow(request.query.follow)) {
        const backlog = queryInt(request.query.limit, 'limit', 0, 0, 1000);
        return followInvocations(service, streams, request.params.id, backlog, reply);
      }
      const limit = queryInt(request.query.limit, 'limit', 100, 1, 1000);
      const offset = queryInt(request.query.offset, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
      return service.invocations(request.params.id, limit, offset);
    });
  };
}

/** The larger body limit of create and update is for packages: any other body keeps the general limit. */
async function onlyPackagesAreLarge(request: FastifyRequest<{ Body: FunctionInput }>): Promise<void> {
  if (request.body.package !== undefined) return;
  const declared = Number(request.headers['content-length']);
  const bytes = Number.isFinite(declared) ? declared : Buffer.byteLength(JSON.stringify(request.body));
  if (bytes > bodyLimitBytes) throw tooLarge(`a body of ${bytes} bytes: at most ${bodyLimitBytes} without a package`);
}

/**
 * How deeply an event may nest. JSON.parse takes any depth, but the host's JSON.stringify of the frame
 * overflows the stack near 4,000 levels (a 500) and the Python agent's json module stops near 1,000 (no reply).
 */
export const maxEventDepth = 512;

/** `{"event": ...}` as documented; a body without an `event` key is taken as the event itself. */
function eventOf(body: unknown): unknown {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw invalid('the body must be a JSON object like {"event": {...}}');
  const event = 'event' in body ? body.event : body;
  if (nestsDeeperThan(event, maxEventDepth)) throw invalid(`the event nests deeper than ${maxEventDepth} levels`);
  return event;
}

/** `Prefer: respond-async` (RFC 7240) asks for an asynchronous invocation; other preferences are ignored. */
function respondAsync(prefer: string | string[] | undefined): boolean {
  const values = prefer === undefined ? [] : Array.isArray(prefer) ? prefer : [prefer];
  return values.some((value) => value.split(',').some((p) => p.trim().toLowerCase() === 'respond-async'));
}

function queryInt(raw: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) throw invalid(`${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** `follow=true` streams; `false` or absent answers a page; anything else is a client bug worth a 400. */
function isFollow(raw: string | undefined): boolean {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw invalid('follow must be true or false');
}

// Server-sent events: live function state for the console (no polling). `GET /v1/events` streams every
// change; `GET /v1/functions/{id}/events` one function's, starting with its current state.
import type { EventEmitter } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { FunctionChange, FunctionService } from '../functions/service.js';
import type { OnRequest } from './server.js';
import { EventStreams } from './sse.js';

/** `changes`: in a fleet, every host's changes (else this service's). */
export function eventsRoutes(service: FunctionService, toOwner?: OnRequest, changes: EventEmitter = service.changes) {
  return async (app: FastifyInstance): Promise<void> => {
    if (toOwner) app.addHook('onRequest', toOwner);
    const streams = new EventStreams(app);

    app.get('/v1/events', async (_request, reply) => {
      const listener = (change: FunctionChange) => sink.send('deleted' in change ? 'deleted' : 'function', change);
      const sink = streams.start(reply, () => changes.off('change', listener));
      changes.on('change', listener);
      sink.send('hello', { items: (await service.listAll()).length });
    });

    app.get<{ Params: { id: string } }>('/v1/functions/:id/events', async (request, reply) => {
      const { id } = service.get(request.params.id); // 404 before the stream starts
      const listener = (change: FunctionChange) => {
        if ('deleted' in change ? change.deleted === id : change.item.id === id) {
          sink.send('deleted' in change ? 'deleted' : 'function', change);
        }
      };
      const sink = streams.start(reply, () => service.changes.off('change', listener));
      service.changes.on('change', listener);
      sink.send('function', { item: service.get(id) });
    });
  };
}

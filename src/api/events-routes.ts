// Server-sent events: live function state for the console (no polling). `GET /v1/events` streams every
// change; `GET /v1/functions/{id}/events` one function's, starting with its current state.
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { FunctionChange, FunctionService } from '../functions/service.js';

const keepAliveMs = 15_000;

function stream(reply: FastifyReply, onClose: () => void): (event: string, data: unknown) => void {
  reply.hijack();
  // hijack() skips Fastify's reply pipeline, so copy the CORS header the cors plugin decided on.
  const allowOrigin = reply.getHeader('access-control-allow-origin');
  reply.raw.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    ...(allowOrigin ? { 'access-control-allow-origin': String(allowOrigin) } : {}),
  });
  const keepAlive = setInterval(() => reply.raw.write(': keep-alive\n\n'), keepAliveMs);
  reply.raw.on('close', () => {
    clearInterval(keepAlive);
    onClose();
  });
  return (event, data) => reply.raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export function eventsRoutes(service: FunctionService) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/v1/events', async (_request, reply) => {
      const listener = (change: FunctionChange) => send('deleted' in change ? 'deleted' : 'function', change);
      const send = stream(reply, () => service.changes.off('change', listener));
      service.changes.on('change', listener);
      send('hello', { items: service.list().length });
    });

    app.get<{ Params: { id: string } }>('/v1/functions/:id/events', async (request, reply) => {
      const { id } = service.get(request.params.id); // 404 before the stream starts
      const listener = (change: FunctionChange) => {
        if ('deleted' in change ? change.deleted === id : change.item.id === id) {
          send('deleted' in change ? 'deleted' : 'function', change);
        }
      };
      const send = stream(reply, () => service.changes.off('change', listener));
      service.changes.on('change', listener);
      send('function', { item: service.get(id) });
    });
  };
}

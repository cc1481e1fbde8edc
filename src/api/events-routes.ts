// Server-sent events: live function state for the console (no polling). `GET /v1/events` streams every
// change; `GET /v1/functions/{id}/events` one function's, starting with its current state.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { FunctionChange, FunctionService } from '../functions/service.js';

const keepAliveMs = 15_000;

/**
 * A client that does not keep up is dropped once this much is queued for it, so a stalled tab cannot grow
 * server memory: it holds at most this plus one event. Dropping rather than coalescing keeps no state per
 * client and loses nothing: EventSource reconnects, the list reloads on every (re)connection and a
 * function's stream starts with its current state.
 */
export const maxBacklogBytes = 1024 * 1024;

function stream(reply: FastifyReply, open: Set<ServerResponse>, onClose: () => void): (event: string, data: unknown) => void {
  reply.hijack();
  // hijack() skips Fastify's reply pipeline, so copy the CORS header the cors plugin decided on.
  const allowOrigin = reply.getHeader('access-control-allow-origin');
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    ...(allowOrigin ? { 'access-control-allow-origin': String(allowOrigin) } : {}),
  });
  const write = (chunk: string) => {
    if (res.destroyed) return; // dropped; 'close' unsubscribes on the next tick
    if (res.writableLength > maxBacklogBytes) res.destroy();
    else res.write(chunk);
  };
  const keepAlive = setInterval(() => write(': keep-alive\n\n'), keepAliveMs);
  open.add(res);
  res.on('close', () => {
    open.delete(res);
    clearInterval(keepAlive);
    onClose();
  });
  return (event, data) => write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

export function eventsRoutes(service: FunctionService) {
  return async (app: FastifyInstance): Promise<void> => {
    const open = new Set<ServerResponse>();
    // Fastify's close waits for every request to finish, and a stream never does: end them first, so a
    // console tab cannot hold up shutdown. The end reaches the kernel at once for a client that keeps up;
    // destroying then drops only what a stalled client had not read.
    app.addHook('preClose', async () => {
      for (const res of open) {
        res.end();
        res.destroy();
      }
    });

    app.get('/v1/events', async (_request, reply) => {
      const listener = (change: FunctionChange) => send('deleted' in change ? 'deleted' : 'function', change);
      const send = stream(reply, open, () => service.changes.off('change', listener));
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
      const send = stream(reply, open, () => service.changes.off('change', listener));
      service.changes.on('change', listener);
      send('function', { item: service.get(id) });
    });
  };
}

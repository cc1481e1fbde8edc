// Server-sent event streams (text/event-stream) that cannot hold up shutdown or grow server memory.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';

const keepAliveMs = 15_000;

/**
 * A client that does not keep up is dropped once this much is queued for it, so a stalled tab cannot grow
 * server memory: it holds at most this plus one event. Dropping rather than coalescing keeps no state per
 * client and loses nothing: EventSource reconnects, and every stream starts with what a reconnection needs.
 */
export const maxBacklogBytes = 1024 * 1024;

export interface EventSink {
  send(event: string, data: unknown): void;
  /** Ends the stream (the client sees it close). */
  end(): void;
}

/** The open streams of one route plugin. */
export class EventStreams {
  private readonly open = new Set<ServerResponse>();

  constructor(app: FastifyInstance) {
    // Fastify's close waits for every request to finish, and a stream never does: end them first, so a
    // console tab cannot hold up shutdown. The end reaches the kernel at once for a client that keeps up;
    // destroying then drops only what a stalled client had not read.
    app.addHook('preClose', async () => {
      for (const res of this.open) {
        res.end();
        res.destroy();
      }
    });
  }

  /** Turns the reply into an event stream; `onClose` runs once the client is gone (or dropped). */
  start(reply: FastifyReply, onClose: () => void): EventSink {
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
    // Sent now, not with the first event: EventSource's `open` (on which a client reloads what it missed) fires
    // on the headers, and a followed function's log may stay silent until the 15 s keep-alive.
    res.flushHeaders();
    const write = (chunk: string) => {
      if (res.destroyed || res.writableEnded) return; // dropped or ended; 'close' unsubscribes on the next tick
      if (res.writableLength > maxBacklogBytes) res.destroy();
      else res.write(chunk);
    };
    const keepAlive = setInterval(() => write(': keep-alive\n\n'), keepAliveMs);
    this.open.add(res);
    res.on('close', () => {
      this.open.delete(res);
      clearInterval(keepAlive);
      onClose();
    });
    return {
      send: (event, data) => write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
      end: () => res.end(),
    };
  }
}

// `GET /v1/functions/{id}/logs?follow=true`: the function's newest `limit` invocation records (oldest first),
// then every new one as soon as it is committed, as server-sent events; `deleted` ends the stream.
import type { FastifyReply } from 'fastify';
import type { Invoked } from '../functions/activity.js';
import type { FunctionChange, FunctionService } from '../functions/service.js';
import type { InvocationRecord } from '../store/types.js';
import type { EventStreams } from './sse.js';

export async function followInvocations(service: FunctionService, streams: EventStreams, idOrName: string, backlog: number, reply: FastifyReply): Promise<void> {
  const { id } = service.get(idOrName); // 404 before the stream starts
  // Subscribed before the backlog is read, so nothing committed meanwhile is missed; what both saw is sent once.
  let waiting: InvocationRecord[] | null = [];
  const onInvocation = ({ record }: Invoked) => {
    if (record.function_id !== id) return;
    if (waiting) waiting.push(record);
    else sink.send('invocation', record);
  };
  const onChange = (change: FunctionChange) => {
    if (!('deleted' in change) || change.deleted !== id) return;
    sink.send('deleted', change);
    sink.end();
  };
  const sink = streams.start(reply, () => {
    service.activity.off('invocation', onInvocation);
    service.changes.off('change', onChange);
  });
  service.activity.on('invocation', onInvocation);
  service.changes.on('change', onChange);
  const recent = backlog === 0 ? [] : (await service.invocations(id, backlog, 0).catch(() => ({ items: [] }))).items.reverse();
  const sent = new Set(recent.map((record) => record.id));
  for (const record of recent) sink.send('invocation', record);
  for (const record of waiting) if (!sent.has(record.id)) sink.send('invocation', record);
  waiting = null;
}

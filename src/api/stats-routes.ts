// Invocation statistics: a function's time series and every function's totals. HTTP only; src/functions/metrics.ts
// does the work.
import type { FastifyInstance } from 'fastify';
import { invalid } from '../functions/errors.js';
import type { FunctionService } from '../functions/service.js';

type Query = Record<string, string | string[] | undefined>;

export function statsRoutes(service: FunctionService) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Params: { id: string }; Querystring: Query }>('/v1/functions/:id/metrics', async (request) =>
      service.metrics(request.params.id, single(request.query, 'since'), single(request.query, 'step')));

    app.get<{ Querystring: Query }>('/v1/metrics', async (request) => service.metricsSummary(single(request.query, 'since')));
  };
}

/** A query parameter given at most once (`?since=1h&since=2h` is a client bug, not a choice for us to make). */
function single(query: Query, name: string): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) throw invalid(`${name} must be given once`);
  return value;
}

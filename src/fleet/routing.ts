// Which host answers a request about a function: this one if it holds the function, else the function's owner
// (the request is forwarded there), else nobody for now (503 while the function is being placed). Requests about
// no particular function (create, list, hosts) are answered here. Runs as an onRequest hook, before the body is
// read, so a forwarded body streams through untouched.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { unavailable } from '../functions/errors.js';
import type { ForwardTarget } from './forward.js';

export interface RoutingOptions {
  hostId: string;
  /** Whether this host holds the function (by id or name). */
  holds: (ref: string) => boolean;
  /** The function's live owner; null if it has none now; undefined if there is no such function. */
  locate: (ref: string) => Promise<ForwardTarget | null | undefined>;
  /** Answers the request with the owner's answer (Forwarder.forward). */
  forward: (request: FastifyRequest, reply: FastifyReply, target: ForwardTarget) => void;
  /** The function a request names (undefined: about no particular function). */
  functionOf: (request: FastifyRequest) => string | undefined;
}

export function routeToOwner(options: RoutingOptions): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (request, reply) => {
    const ref = options.functionOf(request);
    if (ref === undefined || options.holds(ref)) return;
    const owner = await options.locate(ref);
    if (owner === undefined) return; // the route answers 404
    // Held by this host but not yet taken up (it has just claimed it), or by no live host: placement is under way.
    if (owner === null || owner.id === options.hostId) throw unavailable(`function ${ref} is being placed on a host; retry in a moment`);
    options.forward(request, reply, owner);
  };
}

/** The `:id` of a /v1/functions/:id route, as the router matched it. */
export function v1FunctionOf(request: FastifyRequest): string | undefined {
  return request.routeOptions.url?.startsWith('/v1/functions/:id') ? stringParam(request.params, 'id') : undefined;
}

/** The function a `POST /v1/functions/:id/invoke` URL names, read before routing: plain ids and names only. */
export function v1InvocationOf(url: string): string | undefined {
  return /^\/v1\/functions\/([A-Za-z0-9._~-]+)\/invoke(?:\?|$)/.exec(url)?.[1];
}

/** A route parameter, read without trusting the params object's shape. */
export function stringParam(params: unknown, name: string): string | undefined {
  if (typeof params !== 'object' || params === null || !(name in params)) return undefined;
  const value: unknown = Reflect.get(params, name);
  return typeof value === 'string' ? value : undefined;
}

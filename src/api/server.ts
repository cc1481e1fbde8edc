// The HTTP server: Fastify with CORS, body limits, error mapping, and the route plugins.
import type { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerFactory } from 'fastify';
import type { ForwardedClient, Refusal } from '../fleet/forward.js';
import type { HostView } from '../fleet/registry.js';
import { v1FunctionOf, v1InvocationOf } from '../fleet/routing.js';
import type { FunctionService } from '../functions/service.js';
import { requireToken } from './auth.js';
import { sendError } from './errors.js';
import { eventsRoutes } from './events-routes.js';
import { functionsRoutes } from './functions-routes.js';
import { hostsRoutes } from './hosts-routes.js';
import { lambdaRefusal } from './lambda/errors.js';
import { lambdaFunctionOf, lambdaInvocationOf, lambdaRoutes } from './lambda/routes.js';
import { bodyLimitBytes } from './limits.js';
import { redactLine, redactUrl } from './redact.js';
import { statsRoutes } from './stats-routes.js';
import { webConsole } from './web.js';

export interface ApiOptions {
  service: FunctionService;
  health: () => Record<string, unknown>;
  /** Allowed browser origins: exact origins, or '*' for any. Empty: any localhost origin. */
  corsOrigins: string[];
  logLevel: string;
  /** When set, every /v1 request (and /metrics) needs `Authorization: Bearer <token>`. */
  apiToken?: string;
  /** The Prometheus exposition of this server's metrics. */
  metrics: () => Promise<{ contentType: string; text: string }>;
  /** The Lambda API's region (in ARNs) and the access key id its signatures name. */
  lambda: { region: string; accessKeyId: string };
  /** The hosts serving this API (GET /v1/hosts). */
  hosts: () => Promise<HostView[]>;
  /** In a fleet: requests about functions other hosts hold go there; the internal API. */
  fleet?: FleetRouting;
}

export interface FleetRouting {
  /** An onRequest hook for routes naming a function (`functionOf` reads which). */
  route(functionOf: (request: FastifyRequest) => string | undefined, refusal?: Refusal): OnRequest;
  /** Forwards a request about `ref` now, before Fastify, if its owner is known to be another host; else false. */
  forwardEarly(incoming: IncomingMessage, res: ServerResponse, ref: string, refusal?: Refusal): boolean;
  internalApi(app: FastifyInstance): void;
  /** The client's address of a request another host forwarded here; undefined for the others. */
  clientOf(request: FastifyRequest): ForwardedClient | undefined;
  /** Every host's function changes (GET /v1/events). */
  changes: EventEmitter;
}

export type OnRequest = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

const localhostOrigin = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

export function corsOriginCheck(allowed: string[]): (origin: string | undefined) => boolean {
  if (allowed.includes('*')) return () => true;
  if (allowed.length === 0) return (origin) => origin === undefined || localhostOrigin.test(origin);
  return (origin) => origin === undefined || allowed.includes(origin);
}

function withForwarder(req: FastifyRequest, client: ForwardedClient | undefined): Record<string, string | number | undefined> {
  if (client === undefined) return { remoteAddress: req.ip, remotePort: req.socket?.remotePort };
  return { remoteAddress: client.address, forwardedBy: client.host };
}

/** Fastify's defaults, set on the server it makes, so set here too on the one a fleet host makes. */
const serverSettings = { keepAliveTimeout: 72_000, requestTimeout: 0, connectionTimeout: 0 };

/**
 * A fleet host's server: invocations of functions other hosts hold are forwarded before Fastify routes them (the
 * owner checks tokens, signatures and CORS, as it does for every forwarded request); the rest go to Fastify.
 */
export function invocationsForwardedFirst(fleet: Pick<FleetRouting, 'forwardEarly'>): FastifyServerFactory {
  const early = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST' || req.url === undefined) return false;
    const v1 = v1InvocationOf(req.url);
    if (v1 !== undefined) return fleet.forwardEarly(req, res, v1);
    const lambda = lambdaInvocationOf(req.url);
    return lambda !== undefined && fleet.forwardEarly(req, res, lambda, lambdaRefusal);
  };
  return (handler) => {
    // Once Fastify closes the server, every request is its own again: it answers 503 with Connection: close.
    const server = createServer((req, res) => {
      if (!server.listening || !early(req, res)) handler(req, res);
    });
    server.keepAliveTimeout = serverSettings.keepAliveTimeout;
    server.requestTimeout = serverSettings.requestTimeout;
    server.setTimeout(serverSettings.connectionTimeout);
    return server;
  };
}

export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...serverSettings,
    ...(options.fleet ? { serverFactory: invocationsForwardedFirst(options.fleet) } : {}),
    logger: {
      level: options.logLevel,
      // Fastify's own request fields, with the token redacted; headers (Authorization) are never logged.
      serializers: {
        req: (req: FastifyRequest) => ({
          method: req.method,
          url: redactUrl(req.url),
          host: req.host,
          // A request another host forwarded: the client it came from (and the host that forwarded it).
          ...withForwarder(req, options.fleet?.clientOf(req)),
        }),
      },
      hooks: { streamWrite: redactLine },
    },
    bodyLimit: bodyLimitBytes,
    // Numbers must arrive as numbers: "vcpu": "2" is a client bug worth a 400, not a silent coercion.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } },
    return503OnClosing: true,
  });
  app.setErrorHandler(sendError);
  if (options.apiToken) requireToken(app, options.apiToken);
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ error: `no route ${request.method} ${redactUrl(request.url)}` });
  });
  const allowed = corsOriginCheck(options.corsOrigins);
  await app.register(cors, {
    origin: (origin, callback) => callback(null, allowed(origin)),
    methods: ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'],
  });
  app.get('/v1/health', async () => options.health());
  app.get('/metrics', async (_request, reply) => {
    const { contentType, text } = await options.metrics();
    return reply.type(contentType).send(text);
  });
  options.fleet?.internalApi(app);
  const toOwner = options.fleet?.route(v1FunctionOf);
  await app.register(functionsRoutes(options.service, toOwner));
  await app.register(eventsRoutes(options.service, toOwner, options.fleet?.changes));
  await app.register(statsRoutes(options.service));
  await app.register(hostsRoutes(options.hosts));
  await app.register(lambdaRoutes(options.service, { ...options.lambda, apiToken: options.apiToken, toOwner: options.fleet?.route(lambdaFunctionOf, lambdaRefusal) }));
  await app.register(webConsole);
  return app;
}

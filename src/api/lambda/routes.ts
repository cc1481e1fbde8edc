// The Lambda REST API (`/2015-03-31/functions...`, `/2019-09-25/.../event-invoke-config`) over the same domain
// as /v1: one set of functions, whichever API made them. An encapsulated plugin: its bodies arrive as raw bytes
// (SigV4 hashes them as received; botocore sends Invoke with no Content-Type), its errors are AWS-shaped, and
// with an API token every request must carry a SigV4 signature made with that token as the secret key.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FunctionService } from '../../functions/service.js';
import { nestsDeeperThan } from '../../json-depth.js';
import type { FunctionRecord } from '../../store/types.js';
import { defaults } from '../../functions/validation.js';
import { maxEventDepth } from '../functions-routes.js';
import { bodyLimitBytes } from '../limits.js';
import { verifySignature } from '../sigv4.js';
import { jsonObjectOf, jsonOf, optInteger } from './body.js';
import { codeUpdate, configurationUpdate, createInput, functionConfiguration, revisionId } from './configuration.js';
import { invalidContent, invalidParameter, LambdaError, sendLambdaError } from './errors.js';
import { eventInvokeConfig, eventInvokeConfigInput } from './event-config.js';
import { invocationTypeOf, sendInvokeAnswer, wantsTail } from './invoke.js';
import { functionNameOf } from './names.js';
import { stringParam } from '../../fleet/routing.js';
import type { OnRequest } from '../server.js';

export interface LambdaApiOptions {
  /** The region in ARNs when a request is not signed for one. */
  region: string;
  /** With a token, requests must be signed with it as the secret key of `accessKeyId`. */
  apiToken?: string;
  accessKeyId: string;
  /** In a fleet, the hook that sends requests about another host's function there (the signature is checked there). */
  toOwner?: OnRequest;
}

/** The function a Lambda route names (`:name`, a name or an ARN); undefined for the others or a malformed name. */
export function lambdaFunctionOf(request: FastifyRequest): string | undefined {
  if (request.routeOptions.url?.includes('/functions/:name') !== true) return undefined;
  const name = stringParam(request.params, 'name');
  try {
    return name === undefined ? undefined : functionNameOf(name);
  } catch {
    return undefined; // the route refuses it, in Lambda's words
  }
}

/** The function a Lambda Invoke URL names, read before routing (as the route would decode it); else undefined. */
export function lambdaInvocationOf(url: string): string | undefined {
  const name = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?|$)/.exec(url)?.[1];
  try {
    return name === undefined ? undefined : functionNameOf(decodeURIComponent(name));
  } catch {
    return undefined; // the route refuses it, in Lambda's words
  }
}

/** Real CreateFunction takes requests up to this size (a 50 MiB zip, base64, in JSON). */
export const definitionLimitBytes = 70_167_211;
const maxItemsDefault = 50;

type Named = { Params: { name: string }; Querystring: { Qualifier?: string } };

export function lambdaRoutes(service: FunctionService, options: LambdaApiOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    app.setErrorHandler(sendLambdaError);
    app.addHook('onRequest', async (_request, reply) => {
      void reply.header('x-amzn-requestid', randomUUID());
    });
    if (options.toOwner) app.addHook('onRequest', options.toOwner);
    if (options.apiToken !== undefined) {
      const secret = options.apiToken;
      app.addHook('preHandler', async (request) => {
        await verifySignature(
          { method: request.method, rawUrl: request.raw.url ?? '', headers: request.headers, body: bodyOf(request) ?? Buffer.alloc(0) },
          (accessKeyId) => (accessKeyId === options.accessKeyId ? secret : undefined),
        );
      });
    }
    // ARNs name the region the client signed for (the SDK's and CLI's own), else the configured one.
    const regionOf = (request: FastifyRequest) => signedRegion(request.headers.authorization) ?? options.region;
    const find = (request: FastifyRequest<Named>) => service.get(functionNameOf(request.params.name, request.query.Qualifier));
    const definition = { bodyLimit: definitionLimitBytes };

    app.post('/2015-03-31/functions', definition, async (request, reply) => {
      const created = await service.create(createInput(jsonObjectOf(bodyOf(request))));
      return reply.status(201).send(functionConfiguration(created, regionOf(request)));
    });

    const list = async (request: FastifyRequest<{ Querystring: { Marker?: string; MaxItems?: string } }>) => {
      const maxItems = maxItemsOf(request.query.MaxItems);
      const sorted = (await service.listAll()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const marker = request.query.Marker;
      const after = marker === undefined || marker === '' ? sorted : sorted.filter((r) => r.name > marker);
      const page = after.slice(0, maxItems);
      const more = after.length > page.length;
      return { Functions: page.map((r) => functionConfiguration(r, regionOf(request))), ...(more && { NextMarker: page.at(-1)?.name }) };
    };
    app.get('/2015-03-31/functions', list);
    app.get('/2015-03-31/functions/', list); // the Debian CLI's model has the trailing slash

    app.get<Named>('/2015-03-31/functions/:name', async (request) => {
      const record = find(request);
      const code = record.package
        ? { RepositoryType: 'S3', Location: `${request.protocol}://${request.host}/v1/functions/${record.id}/package` }
        : { RepositoryType: 'S3' };
      return {
        Configuration: functionConfiguration(record, regionOf(request)),
        Code: code,
        Tags: {},
        Concurrency: { ReservedConcurrentExecutions: record.max_concurrency },
      };
    });

    app.get<Named>('/2015-03-31/functions/:name/configuration', async (request) => functionConfiguration(find(request), regionOf(request)));

    app.put<Named>('/2015-03-31/functions/:name/configuration', async (request) => {
      const body = jsonObjectOf(bodyOf(request));
      const record = find(request);
      checkRevision(body, record);
      return functionConfiguration(await service.update(record.id, configurationUpdate(body)), regionOf(request));
    });

    app.put<Named>('/2015-03-31/functions/:name/code', definition, async (request) => {
      const body = jsonObjectOf(bodyOf(request));
      const record = find(request);
      checkRevision(body, record);
      return functionConfiguration(await service.update(record.id, codeUpdate(body)), regionOf(request));
    });

    app.delete<Named>('/2015-03-31/functions/:name', async (request, reply) => {
      await service.delete(find(request).id);
      return reply.status(204).send();
    });

    app.put<Named>('/2019-09-25/functions/:name/event-invoke-config', async (request) => {
      const input = eventInvokeConfigInput(jsonObjectOf(bodyOf(request)));
      return eventInvokeConfig(await service.update(find(request).id, input), regionOf(request));
    });

    app.get<Named>('/2019-09-25/functions/:name/event-invoke-config', async (request) => eventInvokeConfig(find(request), regionOf(request)));

    // Reserved concurrency is fnvm's max_concurrency: the most invocations the function runs at once (429 beyond).
    app.put<Named>('/2017-10-31/functions/:name/concurrency', async (request) => {
      const reserved = optInteger(jsonObjectOf(bodyOf(request)), 'ReservedConcurrentExecutions');
      if (reserved === undefined) throw invalidParameter('ReservedConcurrentExecutions is required');
      if (reserved === 0) throw invalidParameter('fnvm cannot reserve 0 (throttle every invocation): max_concurrency is at least 1');
      const updated = await service.update(find(request).id, { max_concurrency: reserved });
      return { ReservedConcurrentExecutions: updated.max_concurrency };
    });

    app.get<Named>('/2019-09-30/functions/:name/concurrency', async (request) => ({ ReservedConcurrentExecutions: find(request).max_concurrency }));

    app.delete<Named>('/2017-10-31/functions/:name/concurrency', async (request, reply) => {
      await service.update(find(request).id, { max_concurrency: defaults.maxConcurrency });
      return reply.status(204).send();
    });

    app.post<Named>('/2015-03-31/functions/:name/invocations', { bodyLimit: bodyLimitBytes }, async (request, reply) => {
      const type = invocationTypeOf(request.headers['x-amz-invocation-type']);
      const tail = wantsTail(request.headers['x-amz-log-type']);
      const record = find(request);
      const event = eventOf(bodyOf(request));
      if (type === 'DryRun') return reply.status(204).send();
      if (type === 'Event') {
        const { request_id } = await service.invokeAsync(record.id, event);
        return reply.status(202).header('x-amzn-requestid', request_id).send();
      }
      const answer = await service.invoke(record.id, event);
      // The record as it is now: a cold start's init time is the VM's that answered.
      return sendInvokeAnswer(reply, answer, currentOf(service, record), tail);
    });
  };
}

const credentialRegion = /Credential=[^/\s]+\/\d{8}\/([a-z0-9-]{1,32})\//;

function signedRegion(authorization: string | undefined): string | undefined {
  return authorization === undefined ? undefined : credentialRegion.exec(authorization)?.[1];
}

function currentOf(service: FunctionService, record: FunctionRecord): FunctionRecord {
  try {
    return service.get(record.id);
  } catch {
    return record; // deleted meanwhile
  }
}

function bodyOf(request: FastifyRequest): Buffer | undefined {
  return Buffer.isBuffer(request.body) ? request.body : undefined;
}

/** An invocation's payload: any JSON value (Lambda passes it through); an empty one is `{}`. */
function eventOf(body: Buffer | undefined): unknown {
  const event = jsonOf(body);
  if (nestsDeeperThan(event, maxEventDepth)) throw invalidContent(`the payload nests deeper than ${maxEventDepth} levels`);
  return event;
}

function maxItemsOf(raw: string | undefined): number {
  if (raw === undefined || raw === '') return maxItemsDefault;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < 1 || value > 10_000) throw new LambdaError('InvalidParameterValueException', 400, 'MaxItems must be an integer from 1 to 10000');
  return value;
}

/** A RevisionId in an update must be the function's current one: the client updates only what it last read. */
function checkRevision(body: Record<string, unknown>, record: FunctionRecord): void {
  const given = body.RevisionId;
  if (given === undefined || given === null) return;
  if (given !== revisionId(record)) {
    throw new LambdaError('PreconditionFailedException', 412, 'The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id');
  }
}

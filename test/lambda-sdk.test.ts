// The Lambda API driven by the real AWS SDK for JavaScript v3 (@aws-sdk/client-lambda from npm), against a real
// server with real VMs: create from a zip, the waiters, get, list across pages, updates of code and
// configuration, invoke RequestResponse (with Tail logs), Event and DryRun, a handler error, a timeout, a
// missing function, delete; functions made over /v1 are the same functions; SigV4 with FNVM_API_TOKEN set.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  CreateFunctionCommand, DeleteFunctionCommand, DeleteFunctionConcurrencyCommand, GetFunctionCommand, GetFunctionConcurrencyCommand,
  PutFunctionConcurrencyCommand, GetFunctionConfigurationCommand, InvokeCommand,
  LambdaClient, ListFunctionsCommand, ResourceNotFoundException, UpdateFunctionCodeCommand,
  UpdateFunctionConfigurationCommand, paginateListFunctions, waitUntilFunctionActiveV2, waitUntilFunctionUpdatedV2,
  type LambdaClientConfig,
} from '@aws-sdk/client-lambda';
import { deployReady, startTestServer, type TestServer } from './support/server.js';
import { zipOf } from './support/zips.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const region = 'eu-west-1';
const role = 'arn:aws:iam::000000000000:role/lambda-role';
const text = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('utf8');
const json = (bytes: Uint8Array | undefined): unknown => JSON.parse(text(bytes));
const payload = (value: unknown) => Buffer.from(JSON.stringify(value));
const waiter = (client: LambdaClient) => ({ client, maxWaitTime: 180, minDelay: 1, maxDelay: 2 });

const nodeIndex = `exports.handler = async (event, context) => {
  console.log('got', JSON.stringify(event));
  if (event.fail) throw new TypeError('asked to fail: ' + event.fail);
  if (event.sleepMs) await new Promise((r) => setTimeout(r, event.sleepMs));
  return { echo: event, greeting: process.env.GREETING ?? null, requestId: context.awsRequestId ?? context.requestId ?? null };
};`;

function client(url: string, overrides: Partial<LambdaClientConfig> = {}): LambdaClient {
  return new LambdaClient({
    endpoint: url,
    region,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'anything' },
    maxAttempts: 1,
    ...overrides,
  });
}

describe('Lambda API with the AWS SDK (no token: signatures not checked)', () => {
  let fnvm: TestServer;
  let lambda: LambdaClient;
  let zip: Buffer;

  before(async () => {
    fnvm = await startTestServer();
    lambda = client(fnvm.url);
    zip = await zipOf({ 'index.js': nodeIndex });
  });
  after(async () => {
    lambda?.destroy();
    await fnvm?.stop();
  });

  test('create from a zip, wait until active, read it back as Lambda describes it', async () => {
    const created = await lambda.send(new CreateFunctionCommand({
      FunctionName: 'sdk-hello', Runtime: 'nodejs20.x', Handler: 'index.handler', Role: role, Code: { ZipFile: zip },
      Description: 'made by the SDK', MemorySize: 256, Timeout: 5, Environment: { Variables: { GREETING: 'hi' } },
    }));
    assert.equal(created.$metadata.httpStatusCode, 201);
    assert.equal(created.State, 'Pending');
    assert.equal(created.FunctionArn, `arn:aws:lambda:${region}:000000000000:function:sdk-hello`);
    assert.equal(created.CodeSha256, createHash('sha256').update(zip).digest('base64'));
    assert.equal(created.CodeSize, zip.length);

    await waitUntilFunctionActiveV2(waiter(lambda), { FunctionName: 'sdk-hello' });
    const got = await lambda.send(new GetFunctionCommand({ FunctionName: 'sdk-hello' }));
    const c = got.Configuration;
    assert.ok(c);
    assert.equal(c.State, 'Active');
    assert.equal(c.LastUpdateStatus, 'Successful');
    assert.equal(c.Runtime, 'nodejs20.x');
    assert.equal(c.Handler, 'index.handler');
    assert.equal(c.Role, role);
    assert.equal(c.Description, 'made by the SDK');
    assert.equal(c.MemorySize, 256);
    assert.equal(c.Timeout, 5);
    assert.equal(c.Version, '$LATEST');
    assert.deepEqual(c.Environment?.Variables, { GREETING: 'hi' });
    assert.ok(c.LastModified && Math.abs(Date.parse(c.LastModified) - Date.now()) < 120_000, c.LastModified);
    // The code location serves the zip as uploaded.
    assert.ok(got.Code?.Location);
    const download = Buffer.from(await (await fetch(got.Code.Location)).arrayBuffer());
    assert.ok(download.equals(zip));

    // The same function over /v1.
    const v1 = await fnvm.api('/v1/functions/sdk-hello');
    assert.equal(v1.status, 200);
    assert.equal(v1.body.item.state, 'ready');
    assert.equal(v1.body.item.description, 'made by the SDK');
    assert.equal(v1.body.item.memory_mb, 256);
  });

  test("invoke RequestResponse with Tail logs; the request id is the invocation record's", async () => {
    const answer = await lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', Payload: payload({ n: 1 }), LogType: 'Tail' }));
    assert.equal(answer.StatusCode, 200);
    assert.equal(answer.FunctionError, undefined);
    assert.equal(answer.ExecutedVersion, '$LATEST');
    const requestId = answer.$metadata.requestId;
    assert.ok(requestId);
    assert.deepEqual(json(answer.Payload), { echo: { n: 1 }, greeting: 'hi', requestId });
    const log = Buffer.from(answer.LogResult ?? '', 'base64').toString('utf8');
    assert.match(log, new RegExp(`^START RequestId: ${requestId} Version: \\$LATEST\\n`));
    assert.ok(log.includes('got {"n":1}'), log);
    assert.match(log, new RegExp(`END RequestId: ${requestId}\\nREPORT RequestId: ${requestId}\\tDuration: [0-9.]+ ms`));
    const history = await fnvm.api('/v1/functions/sdk-hello/logs?limit=1');
    assert.equal(history.body.items[0].request_id, requestId);
    assert.equal(history.body.items[0].status, 'success');
  });

  test('a handler error and a timeout come back as Lambda reports them', async () => {
    const failed = await lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', Payload: payload({ fail: 'please' }) }));
    assert.equal(failed.StatusCode, 200);
    assert.equal(failed.FunctionError, 'Unhandled');
    const error = json(failed.Payload);
    assert.ok(error && typeof error === 'object');
    assert.deepEqual({ ...error, stackTrace: undefined }, { errorType: 'TypeError', errorMessage: 'asked to fail: please', requestId: failed.$metadata.requestId, stackTrace: undefined });
    assert.ok(Array.isArray((error as { stackTrace?: unknown }).stackTrace));
    assert.ok(((error as { stackTrace: string[] }).stackTrace).some((line) => line.includes('index.js')), JSON.stringify(error));

    await lambda.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'sdk-hello', Timeout: 1 }));
    await waitUntilFunctionUpdatedV2(waiter(lambda), { FunctionName: 'sdk-hello' });
    const started = Date.now();
    const timedOut = await lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', Payload: payload({ sleepMs: 5000 }), LogType: 'Tail' }));
    assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms`);
    assert.equal(timedOut.FunctionError, 'Unhandled');
    assert.deepEqual(json(timedOut.Payload), {
      errorType: 'Sandbox.Timedout',
      errorMessage: `RequestId: ${timedOut.$metadata.requestId} Error: Task timed out after 1.00 seconds`,
    });
    assert.match(Buffer.from(timedOut.LogResult ?? '', 'base64').toString(), /Task timed out after 1\.00 seconds\nEND RequestId/);
    await lambda.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'sdk-hello', Timeout: 5 }));
  });

  test('update code and configuration; the waiter sees the update through', async () => {
    const v2 = await zipOf({ 'index.js': 'exports.handler = async (event) => ({ version: 2, event });' });
    const code = await lambda.send(new UpdateFunctionCodeCommand({ FunctionName: 'sdk-hello', ZipFile: v2 }));
    assert.equal(code.CodeSha256, createHash('sha256').update(v2).digest('base64'));
    await waitUntilFunctionUpdatedV2(waiter(lambda), { FunctionName: 'sdk-hello' });
    const answer = await lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', Payload: payload({ k: 'v' }) }));
    assert.deepEqual(json(answer.Payload), { version: 2, event: { k: 'v' } });

    const before = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'sdk-hello' }));
    const config = await lambda.send(new UpdateFunctionConfigurationCommand({
      FunctionName: 'sdk-hello', Description: 'updated', MemorySize: 512, Environment: { Variables: { A: '1' } }, RevisionId: before.RevisionId,
    }));
    assert.equal(config.Description, 'updated');
    assert.equal(config.MemorySize, 512);
    assert.notEqual(config.RevisionId, before.RevisionId);
    await waitUntilFunctionUpdatedV2(waiter(lambda), { FunctionName: 'sdk-hello' });
    const after = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'arn:aws:lambda:eu-west-1:000000000000:function:sdk-hello' }));
    assert.deepEqual([after.Description, after.MemorySize, after.Environment?.Variables], ['updated', 512, { A: '1' }]);
    // A stale RevisionId changes nothing.
    await assert.rejects(
      lambda.send(new UpdateFunctionConfigurationCommand({ FunctionName: 'sdk-hello', Description: 'stale', RevisionId: before.RevisionId })),
      (error: Error) => error.name === 'PreconditionFailedException',
    );
    assert.equal((await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'sdk-hello' }))).Description, 'updated');
  });

  test('DryRun answers 204 and runs nothing; bad input is refused as Lambda refuses it', async () => {
    const before = (await fnvm.api('/v1/functions/sdk-hello/logs?limit=1')).body.total;
    const dry = await lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', InvocationType: 'DryRun', Payload: payload({}) }));
    assert.equal(dry.StatusCode, 204);
    assert.equal((await fnvm.api('/v1/functions/sdk-hello/logs?limit=1')).body.total, before);

    await assert.rejects(
      lambda.send(new CreateFunctionCommand({ FunctionName: 'sdk-ruby', Runtime: 'ruby3.3', Handler: 'index.handler', Role: role, Code: { ZipFile: zip } })),
      (error: Error) => error.name === 'InvalidParameterValueException' && /ruby3\.3/.test(error.message),
    );
    await assert.rejects(
      lambda.send(new CreateFunctionCommand({ FunctionName: 'sdk-hello', Runtime: 'nodejs20.x', Handler: 'index.handler', Role: role, Code: { ZipFile: zip } })),
      (error: Error) => error.name === 'ResourceConflictException',
    );
    await assert.rejects(
      lambda.send(new InvokeCommand({ FunctionName: 'sdk-hello', Payload: Buffer.from('{not json') })),
      (error: Error) => error.name === 'InvalidRequestContentException',
    );
    for (const name of ['no-such-function', 'sdk-hello:7', 'arn:aws:lambda:eu-west-1:123456789012:function:sdk-hello']) {
      await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: name })), (error: Error) => {
        assert.ok(error instanceof ResourceNotFoundException, `${name}: ${error.name}`);
        assert.equal(error.$metadata.httpStatusCode, 404);
        return true;
      });
    }
    assert.equal((await fnvm.api('/v1/functions')).body.items.filter((f: { name: string }) => f.name === 'sdk-ruby').length, 0);
  });

  test('one set of functions: /v1-made ones over Lambda, Lambda-made ones over /v1; list across pages', async () => {
    await deployReady(fnvm, { name: 'v1-made', runtime: 'python', code: 'def handler(event, context):\n    return {"py": event}\n' });
    const answer = await lambda.send(new InvokeCommand({ FunctionName: 'v1-made', Payload: payload({ x: 1 }) }));
    assert.deepEqual(json(answer.Payload), { py: { x: 1 } });
    const config = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'v1-made' }));
    assert.equal(config.Runtime, 'python3.11');
    assert.equal(config.State, 'Active');
    const back = await fnvm.api('/v1/functions/sdk-hello/invoke', { method: 'POST', body: { event: { from: 'v1' } } });
    assert.equal(back.status, 200);
    assert.equal(back.body.response.version, 2);

    for (let i = 0; i < 5; i++) await fnvm.api('/v1/functions', { method: 'POST', body: { name: `page-${i}`, runtime: 'node', code: 'exports.handler = () => 1' } });
    const pages: string[][] = [];
    for await (const page of paginateListFunctions({ client: lambda, pageSize: 2 }, {})) pages.push((page.Functions ?? []).map((f) => f.FunctionName ?? ''));
    const expected = (await fnvm.api('/v1/functions')).body.items.map((f: { name: string }) => f.name).sort();
    assert.deepEqual(pages.flat(), expected);
    assert.ok(pages.length >= 4 && pages.slice(0, -1).every((p) => p.length === 2), JSON.stringify(pages));
    const one = await lambda.send(new ListFunctionsCommand({ MaxItems: 1 }));
    assert.equal(one.Functions?.length, 1);
    assert.equal(one.NextMarker, one.Functions?.[0]?.FunctionName);
  });

  test('reserved concurrency is max_concurrency', async () => {
    const put = await lambda.send(new PutFunctionConcurrencyCommand({ FunctionName: 'sdk-hello', ReservedConcurrentExecutions: 3 }));
    assert.equal(put.ReservedConcurrentExecutions, 3);
    assert.equal((await lambda.send(new GetFunctionConcurrencyCommand({ FunctionName: 'sdk-hello' }))).ReservedConcurrentExecutions, 3);
    assert.equal((await fnvm.api('/v1/functions/sdk-hello')).body.item.max_concurrency, 3);
    assert.equal((await lambda.send(new GetFunctionCommand({ FunctionName: 'sdk-hello' }))).Concurrency?.ReservedConcurrentExecutions, 3);
    await lambda.send(new DeleteFunctionConcurrencyCommand({ FunctionName: 'sdk-hello' }));
    assert.equal((await fnvm.api('/v1/functions/sdk-hello')).body.item.max_concurrency, 100);
    await assert.rejects(
      lambda.send(new PutFunctionConcurrencyCommand({ FunctionName: 'sdk-hello', ReservedConcurrentExecutions: 0 })),
      (error: Error) => error.name === 'InvalidParameterValueException',
    );
  });

  test('delete: gone from both APIs', async () => {
    const deleted = await lambda.send(new DeleteFunctionCommand({ FunctionName: 'sdk-hello' }));
    assert.equal(deleted.$metadata.httpStatusCode, 204);
    await assert.rejects(lambda.send(new GetFunctionCommand({ FunctionName: 'sdk-hello' })), ResourceNotFoundException);
    assert.equal((await fnvm.api('/v1/functions/sdk-hello')).status, 404);
  });
});

describe('Lambda API with FNVM_API_TOKEN: SigV4 signatures with the token as the secret key', () => {
  const token = `t-${randomUUID()}`;
  let fnvm: TestServer;

  before(async () => {
    fnvm = await startTestServer({ apiToken: token, accessKeyId: 'fnvm-ci' }, { sendToken: true });
  });
  after(async () => {
    await fnvm?.stop();
  });

  test('the right key is accepted end to end; a wrong secret, another key id and no signature are refused', async () => {
    const right = client(fnvm.url, { credentials: { accessKeyId: 'fnvm-ci', secretAccessKey: token } });
    const zip = await zipOf({ 'index.js': nodeIndex });
    await right.send(new CreateFunctionCommand({ FunctionName: 'signed', Runtime: 'nodejs22.x', Handler: 'index.handler', Role: role, Code: { ZipFile: zip } }));
    await waitUntilFunctionActiveV2(waiter(right), { FunctionName: 'signed' });
    const answer = await right.send(new InvokeCommand({ FunctionName: 'arn:aws:lambda:eu-west-1:000000000000:function:signed', Payload: payload({ s: 1 }) }));
    assert.deepEqual((json(answer.Payload) as { echo: unknown }).echo, { s: 1 });

    const refusals: Array<[LambdaClient, string]> = [
      [client(fnvm.url, { credentials: { accessKeyId: 'fnvm-ci', secretAccessKey: `${token}x` } }), 'InvalidSignatureException'],
      [client(fnvm.url, { credentials: { accessKeyId: 'someone-else', secretAccessKey: token } }), 'UnrecognizedClientException'],
    ];
    for (const [wrong, type] of refusals) {
      const calls = [
        () => wrong.send(new InvokeCommand({ FunctionName: 'signed' })),
        () => wrong.send(new ListFunctionsCommand({})),
        () => wrong.send(new DeleteFunctionCommand({ FunctionName: 'signed' })),
      ];
      for (const call of calls) {
        await assert.rejects(call(), (error: Error & { $metadata?: { httpStatusCode?: number } }) => {
          assert.equal(error.name, type);
          assert.equal(error.$metadata?.httpStatusCode, 403);
          return true;
        });
      }
      wrong.destroy();
    }
    const unsigned = await fetch(`${fnvm.url}/2015-03-31/functions/signed/invocations`, { method: 'POST', body: '{}' });
    assert.equal(unsigned.status, 403);
    assert.equal(unsigned.headers.get('x-amzn-errortype'), 'MissingAuthenticationTokenException');
    // Nothing a refused request asked for happened: the function is still there and ran once.
    assert.equal((await right.send(new GetFunctionCommand({ FunctionName: 'signed' }))).Configuration?.State, 'Active');
    assert.equal((await fnvm.api('/v1/functions/signed/logs')).body.total, 1);
    right.destroy();
  });
});

// Bad input on the Lambda routes, over raw HTTP (no SDK validating it first): each refusal carries the Lambda
// error format (x-amzn-ErrorType, {"Type", "message"}, x-amzn-RequestId) and its status, and nothing stored
// changes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from './support/server.js';
import { zipOf } from './support/zips.js';

const base = '/2015-03-31/functions';

describe('Lambda API refusals', () => {
  let fnvm: TestServer;
  let zip: string;

  async function call(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) {
    const response = await fetch(fnvm.url + path, { method, body: typeof body === 'string' || body === undefined ? body : new Uint8Array(body), headers });
    const text = await response.text();
    return { status: response.status, headers: response.headers, json: text === '' ? undefined : JSON.parse(text) };
  }

  async function refused(expected: { status: number; type: string; message?: RegExp }, method: string, path: string, body?: string | Buffer, headers?: Record<string, string>) {
    const answer = await call(method, path, body, headers);
    const where = `${method} ${path}: ${JSON.stringify(answer.json)}`;
    assert.equal(answer.status, expected.status, where);
    assert.equal(answer.headers.get('x-amzn-errortype'), expected.type, where);
    assert.match(answer.headers.get('x-amzn-requestid') ?? '', /^[0-9a-f-]{36}$/, where);
    assert.equal(typeof answer.json?.message, 'string', where);
    assert.equal(answer.json.Type, expected.status >= 500 ? 'Service' : 'User', where);
    if (expected.message) assert.match(answer.json.message, expected.message, where);
  }

  const create = (fields: Record<string, unknown>) => JSON.stringify({
    FunctionName: 'ok-fn', Runtime: 'nodejs20.x', Handler: 'index.handler', Role: 'r', Code: { ZipFile: zip }, ...fields,
  });

  before(async () => {
    fnvm = await startTestServer();
    zip = (await zipOf({ 'index.js': 'exports.handler = async (e) => e;' })).toString('base64');
    const made = await call('POST', base, create({}), { 'content-type': 'application/json' });
    assert.equal(made.status, 201, JSON.stringify(made.json));
  });
  after(async () => {
    await fnvm?.stop();
  });

  test('create: malformed, mistyped, unsupported and oversized bodies', async () => {
    await refused({ status: 400, type: 'InvalidRequestContentException' }, 'POST', base, '{"FunctionName":');
    await refused({ status: 400, type: 'InvalidRequestContentException' }, 'POST', base, '[1,2]');
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /FunctionName/ }, 'POST', base, JSON.stringify({ Code: { ZipFile: zip } }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /Code/ }, 'POST', base, create({ Code: undefined }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /MemorySize/ }, 'POST', base, create({ FunctionName: 'x1', MemorySize: '512' }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /memory_mb/ }, 'POST', base, create({ FunctionName: 'x2', MemorySize: 10240 }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /VpcConfig/ }, 'POST', base, create({ FunctionName: 'x3', VpcConfig: { SubnetIds: ['subnet-1'] } }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /S3Bucket/ }, 'POST', base, create({ FunctionName: 'x4', Code: { S3Bucket: 'b', S3Key: 'k' } }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /base64/ }, 'POST', base, create({ FunctionName: 'x5', Code: { ZipFile: 'not base64!' } }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /x86_64/ }, 'POST', base, create({ FunctionName: 'x6', Architectures: ['arm64'] }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /Tags/ }, 'POST', base, create({ FunctionName: 'x8', Tags: { team: 'a' } }));
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /Environment.Variables.N/ }, 'POST', base, create({ FunctionName: 'x7', Environment: { Variables: { N: 1 } } }));
    await refused({ status: 409, type: 'ResourceConflictException' }, 'POST', base, create({}));
    await refused({ status: 413, type: 'RequestTooLargeException' }, 'POST', base, Buffer.alloc(70_167_212, 0x20));
    // Empty structures are how Terraform and the SDKs say "not used": accepted.
    const empty = await call('POST', base, create({ FunctionName: 'empty-vpc', VpcConfig: { SubnetIds: [], SecurityGroupIds: [] }, Layers: [] }));
    assert.equal(empty.status, 201, JSON.stringify(empty.json));
  });

  test('names, qualifiers, list parameters and invoke headers', async () => {
    await refused({ status: 404, type: 'ResourceNotFoundException', message: /nope/ }, 'GET', `${base}/nope`);
    await refused({ status: 404, type: 'ResourceNotFoundException', message: /\$LATEST/ }, 'GET', `${base}/ok-fn?Qualifier=3`);
    await refused({ status: 404, type: 'ResourceNotFoundException' }, 'GET', `${base}/${encodeURIComponent('arn:aws:lambda:us-east-1:111111111111:function:ok-fn')}`);
    const byArn = await call('GET', `${base}/${encodeURIComponent('arn:aws:lambda:us-east-1:000000000000:function:ok-fn:$LATEST')}/configuration`);
    assert.equal(byArn.status, 200);
    assert.equal(byArn.json.FunctionName, 'ok-fn');
    for (const bad of ['0', '10001', 'ten', '-1']) await refused({ status: 400, type: 'InvalidParameterValueException' }, 'GET', `${base}?MaxItems=${bad}`);
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /Invocation-Type/ }, 'POST', `${base}/ok-fn/invocations`, '{}', { 'x-amz-invocation-type': 'Later' });
    await refused({ status: 400, type: 'InvalidParameterValueException', message: /Log-Type/ }, 'POST', `${base}/ok-fn/invocations`, '{}', { 'x-amz-log-type': 'All' });
    await refused({ status: 400, type: 'InvalidRequestContentException' }, 'POST', `${base}/ok-fn/invocations`, '{"a":');
    await refused({ status: 400, type: 'InvalidRequestContentException', message: /deeper/ }, 'POST', `${base}/ok-fn/invocations`, '['.repeat(600) + ']'.repeat(600));
    await refused({ status: 413, type: 'RequestTooLargeException' }, 'POST', `${base}/ok-fn/invocations`, Buffer.alloc(7 * 1024 * 1024, 0x20));
    await refused({ status: 404, type: 'ResourceNotFoundException' }, 'POST', `${base}/nope/invocations`, '{}');
  });

  test('nothing refused was stored or changed', async () => {
    const listed = await call('GET', `${base}/`);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.json.Functions.map((f: { FunctionName: string }) => f.FunctionName), ['empty-vpc', 'ok-fn']);
    const v1 = await fnvm.api('/v1/functions/ok-fn');
    assert.equal(v1.body.item.version, 1);
    assert.equal(v1.body.item.runtime, 'node');
  });
});

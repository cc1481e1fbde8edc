// FNVM_API_TOKEN: bearer-token access, and no listening beyond loopback without one.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { checkExposure } from '../src/api/auth.js';
import { startTestServer, type TestServer } from './support/server.js';

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer({ apiToken: 's3cret-token', poolSize: 0 });
});

after(async () => {
  await fnvm?.stop();
});

test('with a token, /v1 requests need it; preflights and the console do not', async () => {
  const bare = await fnvm.api('/v1/functions');
  assert.equal(bare.status, 401);
  assert.match(bare.body.error, /bearer token/);
  assert.equal((await fnvm.api('/v1/functions', { headers: { authorization: 'Bearer wrong' } })).status, 401);
  const ok = await fnvm.api('/v1/functions', { headers: { authorization: 'Bearer s3cret-token' } });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { items: [] });
  assert.equal((await fnvm.api('/v1/metrics')).status, 401, 'statistics too');
  // The router decodes percent-escapes: an escaped path reaches the same routes and needs the token too.
  for (const path of ['/%761/functions', '/v%31/functions', '/v1/%66unctions', '/%6detrics']) {
    assert.equal((await fetch(`${fnvm.url}${path}`)).status, 401, path);
  }
  assert.equal((await fnvm.api('/v1/functions', { headers: { authorization: 'Bearer s3cret-token-and-more' } })).status, 401);
  assert.deepEqual((await fnvm.api('/v1/metrics', { headers: { authorization: 'Bearer s3cret-token' } })).body.items, []);
  const preflight = await fetch(`${fnvm.url}/v1/functions`, {
    method: 'OPTIONS',
    headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'GET' },
  });
  assert.equal(preflight.status, 204);
  assert.notEqual((await fetch(`${fnvm.url}/`)).status, 401);
});

test('event streams accept the token as a query parameter (EventSource cannot send headers)', async () => {
  const denied = await fetch(`${fnvm.url}/v1/events`);
  assert.equal(denied.status, 401);
  const controller = new AbortController();
  const stream = await fetch(`${fnvm.url}/v1/events?access_token=s3cret-token`, { signal: controller.signal });
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get('content-type'), 'text/event-stream');
  controller.abort();
});

test('refuses to listen beyond loopback without a token', async () => {
  assert.throws(() => checkExposure('0.0.0.0', undefined), /FNVM_API_TOKEN/);
  assert.doesNotThrow(() => checkExposure('0.0.0.0', 'token'));
  assert.doesNotThrow(() => checkExposure('127.0.0.1', undefined));
  await assert.rejects(startTestServer({ host: '0.0.0.0', poolSize: 0 }), /refusing to listen on 0\.0\.0\.0/);
});

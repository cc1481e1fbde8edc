// SigV4 verification against requests signed by two independent signers: `aws4` (as many tools sign) and
// @smithy/signature-v4 configured as the AWS SDK v3 signs (payload hash header, session token, user agent).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import aws4 from 'aws4';
import { SignatureV4 } from '@smithy/signature-v4';
import { NodeSha256, SignatureError, verifySignature, type SignedRequest } from '../src/api/sigv4.js';

const secret = 'the-api-token';
const secretFor = (id: string) => (id === 'fnvm' ? secret : undefined);
const host = '127.0.0.1:18080';
const arnPath = `/2015-03-31/functions/${encodeURIComponent('arn:aws:lambda:us-east-1:000000000000:function:hello')}/invocations`;

/** Node's view of a request: lower-case header names, the URL as sent. */
function received(method: string, url: string, headers: Record<string, string | number>, body: string): SignedRequest {
  return {
    method,
    rawUrl: url,
    headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)])),
    body: Buffer.from(body),
  };
}

function signWithAws4(method: string, path: string, body: string, key = secret, extra: Record<string, string> = {}): SignedRequest {
  const signed = aws4.sign(
    { host, method, path, body, service: 'lambda', region: 'us-east-1', headers: { 'content-type': 'application/json', ...extra } },
    { accessKeyId: 'fnvm', secretAccessKey: key },
  );
  return received(method, path, signed.headers as Record<string, string>, body);
}

/** As the SDK v3 signs: x-amz-content-sha256, a session token and x-amz-user-agent among the signed headers. */
async function signLikeSdk(method: string, path: string, query: Record<string, string>, body: string, at = new Date()): Promise<SignedRequest> {
  const signer = new SignatureV4({ service: 'lambda', region: 'eu-west-1', sha256: NodeSha256, credentials: { accessKeyId: 'fnvm', secretAccessKey: secret, sessionToken: 'session' } });
  const signed = await signer.sign({
    method, protocol: 'http:', hostname: '127.0.0.1', port: 18080, path, query, body,
    headers: { host, 'content-type': 'application/octet-stream', 'content-length': String(Buffer.byteLength(body)), 'x-amz-user-agent': 'aws-sdk-js/3', 'x-amz-invocation-type': 'RequestResponse' },
  }, { signingDate: at });
  const search = Object.entries(query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return received(method, search ? `${path}?${search}` : path, signed.headers, body);
}

const refusedAs = (type: string) => (error: unknown) => error instanceof SignatureError && error.type === type;

describe('SigV4 verification', () => {
  test('accepts what aws4 signs: a body, an ARN in the path, a query', async () => {
    const body = JSON.stringify({ FunctionName: 'hello', Runtime: 'nodejs20.x' });
    assert.deepEqual(await verifySignature(signWithAws4('POST', '/2015-03-31/functions', body), secretFor), { accessKeyId: 'fnvm', region: 'us-east-1' });
    await verifySignature(signWithAws4('POST', arnPath, '{"name":"World"}'), secretFor);
    await verifySignature(signWithAws4('GET', '/2015-03-31/functions/?MaxItems=2&Marker=a%20b%2Fc', ''), secretFor);
  });

  test('accepts what the SDK signs: payload hash header, session token, encoded ARN and $LATEST', async () => {
    const request = await signLikeSdk('POST', arnPath, { Qualifier: '$LATEST' }, '{"n":1}');
    assert.ok(String(request.headers.authorization).includes('x-amz-security-token'), 'the token was signed');
    assert.equal(request.headers['x-amz-content-sha256'], createHash('sha256').update('{"n":1}').digest('hex'));
    assert.deepEqual(await verifySignature(request, secretFor), { accessKeyId: 'fnvm', region: 'eu-west-1' });
  });

  test('refuses a wrong secret, an unknown key, a changed body, path, query or signed header', async () => {
    await assert.rejects(verifySignature(signWithAws4('POST', arnPath, '{}', 'not-the-token'), secretFor), refusedAs('InvalidSignatureException'));
    await assert.rejects(verifySignature(signWithAws4('POST', arnPath, '{}'), () => undefined), refusedAs('UnrecognizedClientException'));
    const good = await signLikeSdk('POST', arnPath, { Qualifier: '$LATEST' }, '{"n":1}');
    await verifySignature(good, secretFor);
    const changes: Array<[string, SignedRequest]> = [
      ['body (hash header kept)', { ...good, body: Buffer.from('{"n":2}') }],
      ['body and its hash header', { ...good, body: Buffer.from('{"n":2}'), headers: { ...good.headers, 'x-amz-content-sha256': createHash('sha256').update('{"n":2}').digest('hex') } }],
      ['path', { ...good, rawUrl: good.rawUrl.replace('hello', 'other') }],
      ['query', { ...good, rawUrl: good.rawUrl.replace('%24LATEST', '1') }],
      ['a signed header', { ...good, headers: { ...good.headers, 'x-amz-invocation-type': 'Event' } }],
    ];
    for (const [what, request] of changes) await assert.rejects(verifySignature(request, secretFor), refusedAs('InvalidSignatureException'), what);
    const aws4Body = signWithAws4('POST', arnPath, '{"a":1}');
    await assert.rejects(verifySignature({ ...aws4Body, body: Buffer.from('{"a":2}') }, secretFor), refusedAs('InvalidSignatureException'), 'aws4: a changed body');
  });

  test('refuses a signature more than 5 minutes from the server clock, either way; accepts one within', async () => {
    const at = new Date('2026-12-02T12:00:00Z');
    const request = await signLikeSdk('GET', '/2015-03-31/functions', {}, '', at);
    await verifySignature(request, secretFor, at.getTime() + 4 * 60_000);
    await verifySignature(request, secretFor, at.getTime() - 4 * 60_000);
    await assert.rejects(verifySignature(request, secretFor, at.getTime() + 6 * 60_000), refusedAs('InvalidSignatureException'));
    await assert.rejects(verifySignature(request, secretFor, at.getTime() - 6 * 60_000), refusedAs('InvalidSignatureException'));
  });

  test('refuses a missing or malformed Authorization header, and an unsigned Host', async () => {
    const request = signWithAws4('GET', '/2015-03-31/functions', '');
    const { authorization: _, ...unsigned } = request.headers;
    await assert.rejects(verifySignature({ ...request, headers: unsigned }, secretFor), refusedAs('MissingAuthenticationTokenException'));
    await assert.rejects(verifySignature({ ...request, headers: { ...request.headers, authorization: 'Bearer the-api-token' } }, secretFor),
      (error: unknown) => refusedAs('IncompleteSignatureException')(error) && error instanceof SignatureError && error.status === 400);
    const noHost = String(request.headers.authorization).replace('SignedHeaders=content-type;host;', 'SignedHeaders=content-type;');
    await assert.rejects(verifySignature({ ...request, headers: { ...request.headers, authorization: noHost } }, secretFor), refusedAs('InvalidSignatureException'));
  });
});

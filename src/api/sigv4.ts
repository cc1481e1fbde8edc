// Verifies AWS Signature Version 4 on an incoming request, as Lambda does: the SDKs and the CLI sign every
// request with a secret key, which for fnvm is the API token. The signature is recomputed with the SDK's own
// signer (@smithy/signature-v4) over what was received, and compared in constant time. For the Lambda API (#12).
import { createHash, createHmac, timingSafeEqual, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, SourceData } from '@smithy/types';

/** Real Lambda refuses a request signed more than 5 minutes from its clock. */
export const maxSkewMs = 5 * 60_000;

export interface SignedRequest {
  method: string;
  /** The URL as received: path still percent-encoded (non-S3 services sign it encoded once more), query included. */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A refusal as AWS words it: the error type clients read from x-amzn-ErrorType, and its status. */
export class SignatureError extends Error {
  override name = 'SignatureError';
  constructor(readonly type: string, message: string, readonly status = 403) {
    super(message);
  }
}

const authorization = /^AWS4-HMAC-SHA256 Credential=([^/\s]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;_.-]+), ?Signature=([0-9a-f]{64})$/;
const amzDate = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/;
const mismatch = 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

/** The hash the signer asks for, from node:crypto. */
export class NodeSha256 implements Checksum {
  private hash: Hash | Hmac;
  constructor(private readonly secret?: SourceData) {
    this.hash = this.fresh();
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.fresh();
  }
  private fresh(): Hash | Hmac {
    if (this.secret === undefined) return createHash('sha256');
    const key = this.secret;
    if (typeof key === 'string') return createHmac('sha256', key);
    const bytes = key instanceof ArrayBuffer ? new Uint8Array(key) : new Uint8Array(key.buffer, key.byteOffset, key.byteLength);
    return createHmac('sha256', bytes);
  }
}

/** Resolves to the access key id and region the request was signed for; throws SignatureError otherwise. */
export async function verifySignature(request: SignedRequest, secretFor: (accessKeyId: string) => string | undefined, now = Date.now()): Promise<{ accessKeyId: string; region: string }> {
  const header = single(request.headers.authorization);
  if (header === undefined) throw new SignatureError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const parts = authorization.exec(header);
  if (!parts) throw new SignatureError('IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature, signed with AWS4-HMAC-SHA256.', 400);
  const [, accessKeyId = '', day = '', region = '', service = '', signedList = '', signature = ''] = parts;
  const secret = secretFor(accessKeyId);
  if (secret === undefined) throw new SignatureError('UnrecognizedClientException', 'The security token included in the request is invalid.');

  const date = single(request.headers['x-amz-date']) ?? '';
  const d = amzDate.exec(date);
  if (!d || date.slice(0, 8) !== day) throw new SignatureError('InvalidSignatureException', 'Credential should be scoped to the date of X-Amz-Date.');
  if (service !== 'lambda') throw new SignatureError('InvalidSignatureException', `Credential should be scoped to correct service: 'lambda'.`);
  const signedAt = Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]), Number(d[4]), Number(d[5]), Number(d[6]));
  if (Math.abs(now - signedAt) > maxSkewMs) {
    throw new SignatureError('InvalidSignatureException', `Signature expired or not yet current: ${date} is more than 5 min from the server's time ${isoBasic(now)}.`);
  }

  const signed = signedList.split(';');
  if (!signed.includes('host')) throw new SignatureError('InvalidSignatureException', "'Host' must be a 'SignedHeader' in the AWS Authorization.");
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const value = request.headers[name];
    if (value === undefined) throw new SignatureError('InvalidSignatureException', `the signed header ${name} is missing`);
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  // The signer takes a declared payload hash on trust: it must be the body's, or any body would pass.
  const declared = single(request.headers['x-amz-content-sha256']);
  if (declared !== undefined && declared !== createHash('sha256').update(request.body).digest('hex')) {
    throw new SignatureError('InvalidSignatureException', 'The provided x-amz-content-sha256 header does not match what was computed.');
  }

  const queryAt = request.rawUrl.indexOf('?');
  const path = queryAt < 0 ? request.rawUrl : request.rawUrl.slice(0, queryAt);
  const signer = new SignatureV4({
    service,
    region,
    sha256: NodeSha256,
    applyChecksum: false,
    uriEscapePath: true,
    credentials: { accessKeyId, secretAccessKey: secret },
  });
  const expected = await signer.sign(
    { method: request.method, protocol: 'http:', hostname: 'unused', path, query: queryOf(queryAt < 0 ? '' : request.rawUrl.slice(queryAt + 1)), headers, body: request.body },
    { signingDate: new Date(signedAt), signingRegion: region, signingService: service, signableHeaders: new Set(signed) },
  );
  const computed = /Signature=([0-9a-f]{64})/.exec(String(expected.headers.authorization))?.[1] ?? '';
  if (computed.length !== signature.length || !timingSafeEqual(Buffer.from(computed), Buffer.from(signature))) {
    throw new SignatureError('InvalidSignatureException', mismatch);
  }
  return { accessKeyId, region };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The query as decoded values (the signer re-encodes them); `+` stays a plus, as the SDKs send `%20` for spaces. */
function queryOf(raw: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const key = safeDecode(at < 0 ? pair : pair.slice(0, at));
    const value = safeDecode(at < 0 ? '' : pair.slice(at + 1));
    const before = query[key];
    query[key] = before === undefined ? value : [...(Array.isArray(before) ? before : [before]), value];
  }
  return query;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new SignatureError('InvalidSignatureException', 'the query string is not valid percent-encoding');
  }
}

function isoBasic(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

// FunctionConfiguration as Lambda clients read it, from fnvm's function record, and Lambda's create and update
// bodies as fnvm's function input. fnvm's states map onto Lambda's State and LastUpdateStatus so that the SDK's
// and the CLI's waiters (function-active-v2, function-updated-v2) work unchanged.
import { createHash } from 'node:crypto';
import type { Runtime } from '../../guest/protocol.js';
import type { FunctionInput } from '../../functions/service.js';
import type { FunctionRecord } from '../../store/types.js';
import { isSet, optBoolean, optInteger, optObject, optString, optStringList, optStringMap, type JsonObject } from './body.js';
import { invalidParameter } from './errors.js';
import { functionArn, latest } from './names.js';

/** Lambda's runtime identifiers fnvm serves; the VM runs fnvm's own Node.js or Python whichever is named. */
const runtimes = new Map<string, Runtime>([
  ['nodejs18.x', 'node'], ['nodejs20.x', 'node'], ['nodejs22.x', 'node'],
  ['python3.9', 'python'], ['python3.10', 'python'], ['python3.11', 'python'], ['python3.12', 'python'], ['python3.13', 'python'],
]);
/** What a function created over /v1 reports: the versions the guest images carry (src/images/recipe.ts). */
const reportedRuntime: Record<Runtime, string> = { node: 'nodejs22.x', python: 'python3.11' };

/** Lambda's defaults where they differ from fnvm's. */
const lambdaDefaults = { memoryMb: 128, timeoutSeconds: 3 } as const;

function runtimeOf(identifier: string): Runtime {
  const runtime = runtimes.get(identifier);
  if (!runtime) {
    throw invalidParameter(`Value ${identifier} at 'runtime' failed to satisfy constraint: fnvm runs ${[...runtimes.keys()].join(', ')}`);
  }
  return runtime;
}

/** Lambda's timestamp format: ISO 8601 with milliseconds and a +0000 offset. */
function lambdaTimestamp(iso: string): string {
  return iso.replace(/Z$/, '+0000');
}

/** Base64 of the SHA-256 of the deployment package (of the source text for a single-file function). */
function codeSha256(record: FunctionRecord): string {
  if (record.package) return Buffer.from(record.package.sha256, 'hex').toString('base64');
  return createHash('sha256').update(record.code ?? '').digest('base64');
}

function codeSize(record: FunctionRecord): number {
  return record.package ? record.package.size : Buffer.byteLength(record.code ?? '');
}

/** A uuid-shaped id of the function's current version: clients send it back to update only what they read. */
export function revisionId(record: FunctionRecord): string {
  const hex = createHash('sha256').update(`${record.id}/${record.version}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function states(record: FunctionRecord): Record<string, string> {
  switch (record.state) {
    case 'creating':
    case 'booting':
    case 'deploying':
      // A first deploy is Lambda's creation; a redeploy after an update is an update in progress.
      if (record.version === 1) return { State: 'Pending', StateReason: 'The function is being created.', StateReasonCode: 'Creating' };
      return { State: 'Active', LastUpdateStatus: 'InProgress', LastUpdateStatusReason: 'The function is being updated.', LastUpdateStatusReasonCode: 'Creating' };
    case 'ready':
      return { State: 'Active', LastUpdateStatus: 'Successful' };
    case 'error': {
      const reason = record.error ?? 'the function failed to deploy';
      return { State: 'Failed', StateReason: reason, StateReasonCode: 'FunctionError', LastUpdateStatus: 'Failed', LastUpdateStatusReason: reason, LastUpdateStatusReasonCode: 'FunctionError' };
    }
  }
}

export function functionConfiguration(record: FunctionRecord, region: string): Record<string, unknown> {
  return {
    FunctionName: record.name,
    FunctionArn: functionArn(region, record.name),
    Runtime: record.lambda_runtime ?? reportedRuntime[record.runtime],
    ...(record.lambda_role !== null && { Role: record.lambda_role }),
    Handler: record.handler,
    CodeSize: codeSize(record),
    CodeSha256: codeSha256(record),
    Description: record.description,
    Timeout: record.timeout_seconds,
    MemorySize: record.memory_mb,
    LastModified: lambdaTimestamp(record.updated_at),
    Version: latest,
    RevisionId: revisionId(record),
    PackageType: 'Zip',
    Architectures: ['x86_64'],
    EphemeralStorage: { Size: 512 },
    TracingConfig: { Mode: 'PassThrough' },
    LoggingConfig: { LogFormat: 'Text', LogGroup: `/aws/lambda/${record.name}` },
    ...(Object.keys(record.env_vars).length > 0 && { Environment: { Variables: record.env_vars } }),
    ...states(record),
  };
}

/** Settings fnvm does not have: refused when given a value, so a client never believes they took effect. */
const unsupported = ['VpcConfig', 'DeadLetterConfig', 'KMSKeyArn', 'Layers', 'FileSystemConfigs', 'ImageConfig', 'CodeSigningConfigArn', 'SnapStart'];

function refuseUnsupported(body: JsonObject): void {
  for (const key of unsupported) if (isSet(body[key])) throw invalidParameter(`${key} is not supported by fnvm`);
  const tracing = optObject(body, 'TracingConfig');
  if (tracing && optString(tracing, 'Mode') === 'Active') throw invalidParameter('TracingConfig Mode Active (X-Ray) is not supported by fnvm');
  const architectures = optStringList(body, 'Architectures');
  if (architectures && architectures.some((a) => a !== 'x86_64')) throw invalidParameter('fnvm runs x86_64 functions only');
  const storage = optObject(body, 'EphemeralStorage');
  if (storage && optInteger(storage, 'Size') !== undefined && optInteger(storage, 'Size') !== 512) throw invalidParameter('EphemeralStorage Size is 512 MB on fnvm');
}

/** The settings common to CreateFunction and UpdateFunctionConfiguration. */
function configurationInput(body: JsonObject): FunctionInput {
  refuseUnsupported(body);
  const input: FunctionInput = {};
  const runtime = optString(body, 'Runtime');
  if (runtime !== undefined) Object.assign(input, { runtime: runtimeOf(runtime), lambda_runtime: runtime });
  const handler = optString(body, 'Handler');
  if (handler !== undefined) input.handler = handler;
  const description = optString(body, 'Description');
  if (description !== undefined) input.description = description;
  const role = optString(body, 'Role');
  if (role !== undefined) input.lambda_role = role;
  const memory = optInteger(body, 'MemorySize');
  if (memory !== undefined) input.memory_mb = memory;
  const timeout = optInteger(body, 'Timeout');
  if (timeout !== undefined) input.timeout_seconds = timeout;
  const environment = optObject(body, 'Environment');
  if (environment) input.env_vars = optStringMap(environment, 'Variables', 'Environment.Variables') ?? {};
  return input;
}

/** The zip of a Code or UpdateFunctionCode body, base64 as JSON carries blobs. */
function zipOf(code: JsonObject, where: string): string {
  for (const key of ['S3Bucket', 'S3Key', 'S3ObjectVersion', 'ImageUri']) {
    if (isSet(code[key])) throw invalidParameter(`${where}.${key}: fnvm takes the code as ZipFile only`);
  }
  const zip = optString(code, 'ZipFile');
  if (zip === undefined) throw invalidParameter(`${where}.ZipFile is required`);
  return zip;
}

export function createInput(body: JsonObject): FunctionInput {
  const name = optString(body, 'FunctionName');
  if (name === undefined) throw invalidParameter('FunctionName is required');
  if (optString(body, 'PackageType') === 'Image') throw invalidParameter('PackageType Image is not supported by fnvm: use Zip');
  if (optBoolean(body, 'Publish') === true) throw invalidParameter('Publish is not supported by fnvm: a function has only $LATEST');
  if (isSet(body.Tags)) throw invalidParameter('Tags are not supported by fnvm (a function has none)');
  const code = optObject(body, 'Code');
  if (!code) throw invalidParameter('Code is required');
  const input = configurationInput(body);
  if (input.runtime === undefined) throw invalidParameter('Runtime is required for a .zip deployment package');
  if (input.handler === undefined) throw invalidParameter('Handler is required for a .zip deployment package');
  return {
    memory_mb: lambdaDefaults.memoryMb,
    timeout_seconds: lambdaDefaults.timeoutSeconds,
    ...input,
    name,
    package: zipOf(code, 'Code'),
  };
}

export function configurationUpdate(body: JsonObject): FunctionInput {
  return configurationInput(body);
}

export function codeUpdate(body: JsonObject): FunctionInput {
  if (optBoolean(body, 'Publish') === true) throw invalidParameter('Publish is not supported by fnvm: a function has only $LATEST');
  if (optBoolean(body, 'DryRun') === true) throw invalidParameter('DryRun is not supported by fnvm');
  const architectures = optStringList(body, 'Architectures');
  if (architectures && architectures.some((a) => a !== 'x86_64')) throw invalidParameter('fnvm runs x86_64 functions only');
  return { package: zipOf(body, 'UpdateFunctionCode') };
}

// What a function definition may contain, and the normalised form the domain works with.
import type { Runtime } from '../guest/protocol.js';
import { specLimits } from '../vm/spec.js';
import { packageLimits } from '../packages/types.js';
import { invalid, tooLarge } from './errors.js';

export const limits = {
  vcpu: specLimits.vcpu,
  memoryMb: specLimits.memoryMb,
  timeoutSeconds: { min: 1, max: 900 },
  maxConcurrency: { min: 1, max: 1000 },
  nameLength: 64,
  handlerLength: 128,
  envVars: 64,
  descriptionLength: 256,
  /** Lambda's: MaximumRetryAttempts 0-2, MaximumEventAgeInSeconds 60-21600, an async payload 1 MB. */
  asyncMaxRetries: { min: 0, max: 2 },
  asyncMaxEventAgeSeconds: { min: 60, max: 21_600 },
  asyncEventBytes: 1024 * 1024,
  /** A page of dead letters ends early once its events pass this (up to 1 MiB each, a page of 1000 would be 1 GiB). */
  deadLetterPageBytes: 4 * 1024 * 1024,
  labelLength: 2048,
  /** A single-file function's source, as the body limit bounded it before packages (bigger code: a package). */
  codeBytes: 6 * 1024 * 1024,
} as const;

export const defaults = {
  handler: 'handler',
  vcpu: 1,
  memoryMb: 256,
  timeoutSeconds: 30,
  maxConcurrency: 100,
} as const;

// A Map, not an object literal: user input must never find "constructor" or "__proto__" on a prototype.
const runtimeAliases = new Map<string, Runtime>([
  ['node', 'node'], ['nodejs', 'node'], ['node.js', 'node'], ['javascript', 'node'], ['js', 'node'],
  ['python', 'python'], ['python3', 'python'], ['python3.11', 'python'], ['py', 'python'],
]);
export const namePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
export const handlerPattern = /^([A-Za-z_$][\w$-]*\.)?[A-Za-z_$][\w$]*$/;
/**
 * A packaged function's handler: a file of the package and its export (`index.handler`, `src/app.handler`,
 * Python's `pkg.module.handler`). Relative, no `..`: it names a file inside /var/task.
 */
export const packageHandlerPattern = /^(?:[\w@$-][\w@$.-]*\/)*[\w@$-][\w@$.-]*\.[A-Za-z_$][\w$]*$/;
export const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}

export function normaliseRuntime(value: string): Runtime {
  const runtime = runtimeAliases.get(value.toLowerCase());
  if (!runtime) throw invalid(`unknown runtime "${value}": use "node" or "python"`);
  return runtime;
}

export function checkName(name: string): string {
  if (name.length === 0 || name.length > limits.nameLength) throw invalid(`name must be 1 to ${limits.nameLength} characters`);
  if (!namePattern.test(name)) throw invalid('name may contain letters, digits, "-", "_" and "." and must start with a letter or digit');
  if (isUuid(name)) throw invalid('name must not look like a function id (a UUID)');
  return name;
}

export function checkHandler(handler: string, packaged: boolean): string {
  if (handler.length > limits.handlerLength) throw invalid(`handler must be at most ${limits.handlerLength} characters`);
  if (packaged) {
    if (!packageHandlerPattern.test(handler) || handler.split('/').includes('..')) {
      throw invalid(`handler "${handler}" must name a file of the package and its function, such as "index.handler" or "src/app.handler"`);
    }
  } else if (!handlerPattern.test(handler)) {
    throw invalid(`handler "${handler}" must be a function name such as "handler" or "index.handler"`);
  }
  return handler;
}

/** The default handler of a packaged function: Lambda's usual names. */
export function defaultPackageHandler(runtime: Runtime): string {
  return runtime === 'python' ? 'lambda_function.lambda_handler' : 'index.handler';
}

const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/;

/** A package as sent: base64 of a zip, at most packageLimits.zippedBytes once decoded. */
export function decodePackage(base64: string): Buffer {
  if (base64.length % 4 !== 0 || !base64Pattern.test(base64)) throw invalid('package must be the base64 of a zip file');
  const zip = Buffer.from(base64, 'base64');
  if (zip.length === 0) throw invalid('package must not be empty');
  if (zip.length > packageLimits.zippedBytes) {
    throw tooLarge(`package is ${zip.length} bytes zipped: at most ${packageLimits.zippedBytes} bytes (50 MiB)`);
  }
  return zip;
}

export function checkDescription(description: string): string {
  if (description.length > limits.descriptionLength) throw invalid(`description must be at most ${limits.descriptionLength} characters`);
  return description;
}

/** A short piece of text kept for a client (a Lambda role ARN, a runtime identifier), or null. */
export function checkLabel(field: string, value: unknown): string | null {
  if (value === null) return null;
  if (typeof value !== 'string' || value.length > limits.labelLength) throw invalid(`${field} must be a string of at most ${limits.labelLength} characters`);
  return value;
}

export function checkEnvVars(env: Record<string, string>): Record<string, string> {
  const names = Object.keys(env);
  if (names.length > limits.envVars) throw invalid(`at most ${limits.envVars} env_vars`);
  for (const name of names) {
    if (!envNamePattern.test(name)) throw invalid(`env_vars name "${name}" is not a valid variable name`);
  }
  return env;
}

export function checkRange(field: string, value: number, range: { min: number; max: number }): number {
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    throw invalid(`${field} must be an integer from ${range.min} to ${range.max}`);
  }
  return value;
}

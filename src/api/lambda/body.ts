// Reading the JSON bodies of Lambda requests. The routes take raw bytes (SigV4 hashes them as received), so
// parsing and shape checks happen here, by type guards rather than casts: a wrong type is a 400 naming the field.
import { invalidContent, invalidParameter } from './errors.js';

export type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Any JSON value; an empty body is `{}` (as Lambda takes an empty invocation payload). */
export function jsonOf(body: Buffer | undefined): unknown {
  if (body === undefined || body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- JSON.parse throws SyntaxError
    throw invalidContent(`Could not parse request body into json: ${(error as Error).message}`);
  }
}

/** The body as a JSON object; an empty body is `{}`. */
export function jsonObjectOf(body: Buffer | undefined): JsonObject {
  const value = jsonOf(body);
  if (!isObject(value)) throw invalidContent('the request body must be a JSON object');
  return value;
}

export function optString(body: JsonObject, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidParameter(`${key} must be a string`);
  return value;
}

export function optInteger(body: JsonObject, key: string): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidParameter(`${key} must be an integer`);
  return value;
}

export function optBoolean(body: JsonObject, key: string): boolean | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalidParameter(`${key} must be true or false`);
  return value;
}

export function optObject(body: JsonObject, key: string): JsonObject | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalidParameter(`${key} must be an object`);
  return value;
}

/** `label` names the map in messages (its path in the body). */
export function optStringMap(body: JsonObject, key: string, label = key): Record<string, string> | undefined {
  const value = optObject(body, key);
  if (value === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalidParameter(`${label}.${name} must be a string`);
    out[name] = v;
  }
  return out;
}

export function optStringList(body: JsonObject, key: string): string[] | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw invalidParameter(`${key} must be a list of strings`);
  return value.filter((v): v is string => typeof v === 'string');
}

/** True when `value` carries something: the SDKs and Terraform send empty lists and structures for "not used". */
export function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === '' || value === false) return false;
  if (Array.isArray(value)) return value.some(isSet);
  if (isObject(value)) return Object.values(value).some(isSet);
  return true;
}

// Reading JSON the server sent: checked field by field, never asserted into a type.
import { CliError } from './errors.js';

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unexpected(what: string): CliError {
  return new CliError(`unexpected answer from the server: ${what}`);
}

export function asObject(value: unknown, what: string): JsonObject {
  if (!isObject(value)) throw unexpected(`${what} is not an object`);
  return value;
}

export function objectAt(value: unknown, key: string): JsonObject {
  const field = isObject(value) ? value[key] : undefined;
  if (!isObject(field)) throw unexpected(`"${key}" is not an object`);
  return field;
}

export function arrayAt(value: unknown, key: string): unknown[] {
  const field = isObject(value) ? value[key] : undefined;
  if (!Array.isArray(field)) throw unexpected(`"${key}" is not an array`);
  return field;
}

export function stringAt(value: JsonObject, key: string): string {
  const field = value[key];
  if (typeof field !== 'string') throw unexpected(`"${key}" is not a string`);
  return field;
}

export function numberAt(value: JsonObject, key: string): number {
  const field = value[key];
  if (typeof field !== 'number') throw unexpected(`"${key}" is not a number`);
  return field;
}

export function optionalString(value: JsonObject, key: string): string | null {
  const field = value[key];
  return typeof field === 'string' ? field : null;
}

export function stringsAt(value: JsonObject, key: string): string[] {
  const field = value[key];
  return Array.isArray(field) ? field.filter((line): line is string => typeof line === 'string') : [];
}

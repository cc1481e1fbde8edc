// Parsers of option values, for commander: each throws InvalidArgumentError, which commander reports with usage.
import { InvalidArgumentError } from 'commander';
import { envNamePattern } from '../functions/validation.js';

export function intOption(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${flag} must be a whole number`);
    return Number(value);
  };
}

/** `--env K=V`, repeated: collected into one object. */
export function keyValue(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = value.indexOf('=');
  const key = eq < 0 ? '' : value.slice(0, eq);
  if (!envNamePattern.test(key)) throw new InvalidArgumentError(`"${value}" is not KEY=VALUE with a valid variable name`);
  return { ...previous, [key]: value.slice(eq + 1) };
}

// Function names as Lambda clients give them (a name, a partial ARN or a full ARN, perhaps with a qualifier)
// and the ARNs fnvm answers with. fnvm has one version of a function, $LATEST, and no aliases.
import { invalidParameter, resourceNotFound } from './errors.js';

/** fnvm is one account: the ARNs name this one, as LocalStack's default does. */
export const accountId = '000000000000';
export const latest = '$LATEST';

const fullArn = /^arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([^:]+)(?::([^:]+))?$/;
const partialArn = /^(\d{12}):function:([^:]+)(?::([^:]+))?$/;
const plainName = /^([^:]+)(?::([^:]+))?$/;

/** The function name in `given`; refuses another account and any qualifier but $LATEST (`query` is ?Qualifier=). */
export function functionNameOf(given: string, query?: string): string {
  const full = fullArn.exec(given);
  const partial = full ? null : partialArn.exec(given);
  const plain = full || partial ? null : plainName.exec(given);
  const account = full?.[2] ?? partial?.[1] ?? accountId;
  const name = full?.[3] ?? partial?.[2] ?? plain?.[1];
  const qualifier = full?.[4] ?? partial?.[3] ?? plain?.[2];
  if (name === undefined || given.length > 170) throw invalidParameter(`"${given.slice(0, 170)}" is not a function name or ARN`);
  if (account !== accountId) throw resourceNotFound(`Function not found: ${given} (fnvm is account ${accountId})`);
  for (const q of [qualifier, query]) {
    if (q !== undefined && q !== latest) throw resourceNotFound(`Function not found: ${name}:${q} (fnvm has only ${latest}; no versions or aliases)`);
  }
  return name;
}

export function functionArn(region: string, name: string, qualifier?: string): string {
  return `arn:aws:lambda:${region}:${accountId}:function:${name}${qualifier === undefined ? '' : `:${qualifier}`}`;
}

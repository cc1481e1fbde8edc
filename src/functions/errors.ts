// Domain errors. Each has a kind; src/api maps kinds to HTTP status codes in one place.
export type ErrorKind = 'invalid' | 'not_found' | 'conflict' | 'busy' | 'unavailable' | 'too_large';

export class FunctionError extends Error {
  override name = 'FunctionError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new FunctionError('invalid', message);
export const notFound = (idOrName: string) => new FunctionError('not_found', `function ${idOrName} not found`);
export const conflict = (message: string) => new FunctionError('conflict', message);
export const busy = (message: string) => new FunctionError('busy', message);
export const unavailable = (message: string) => new FunctionError('unavailable', message);
export const tooLarge = (message: string) => new FunctionError('too_large', message);

// The CLI's errors. Each becomes one `fnvm: <message>` line on stderr and exit code 1 (src/cli.ts).

/** Anything the user should read as-is: bad arguments, a file that cannot be read, a failed deployment. */
export class CliError extends Error {
  override name = 'CliError';
}

/** The API answered with an error status; `message` is its `{"error": "..."}`. */
export class ApiError extends CliError {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Nothing answered at the server's URL (refused, unknown host, reset). */
export class ConnectionError extends CliError {
  override name = 'ConnectionError';
  constructor(
    readonly url: string,
    reason: string,
  ) {
    super(`cannot reach the fnvm server at ${url}: ${reason} (is \`fnvm serve\` running? set FNVM_URL to its address)`);
  }
}

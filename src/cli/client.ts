// The API client: Node's fetch against FNVM_URL with the bearer token; `{"error": "..."}` answers become ApiError.
import { ApiError, ConnectionError } from './errors.js';
import { isObject } from './json.js';

/** The server's default address (src/config.ts: FNVM_HOST 127.0.0.1, FNVM_PORT 18080). */
export const defaultUrl = 'http://127.0.0.1:18080';

/** Bytes sent so far of a request body, and its size. */
export type Progress = (sent: number, total: number) => void;

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown;
  /** Called as the body is handed to the connection (only for a JSON body). */
  onProgress?: Progress;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

const uploadChunkBytes = 256 * 1024;

export class Client {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly token: string | undefined,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): Client {
    return new Client(env.FNVM_URL || defaultUrl, env.FNVM_API_TOKEN || undefined);
  }

  /** The JSON of a successful answer; ApiError for an error status, ConnectionError if nothing answers. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<unknown> {
    const response = await this.send(method, path, options);
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      if (!response.ok) throw new ApiError(response.status, `HTTP ${response.status}: ${text.slice(0, 200)}`);
      throw new ApiError(response.status, `the server at ${this.baseUrl} did not answer JSON (is FNVM_URL an fnvm server?)`);
    }
    if (!response.ok) {
      const message = isObject(body) && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  /** The raw response of a successful request (for streams); errors as request(). */
  async open(path: string, signal: AbortSignal): Promise<Response> {
    const response = await this.send('GET', path, { signal });
    if (!response.ok) {
      await this.request('GET', path, { signal }); // reads the error the same way; throws
      throw new ApiError(response.status, `HTTP ${response.status}`);
    }
    return response;
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: BodyInit | undefined;
    let duplex: 'half' | undefined;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      const bytes = Buffer.from(JSON.stringify(options.json));
      headers['content-length'] = String(bytes.length);
      if (options.onProgress) {
        body = chunked(bytes, options.onProgress);
        duplex = 'half'; // required by fetch for a stream body
      } else {
        body = bytes;
      }
    }
    const url = this.baseUrl + path;
    try {
      const init: RequestInit & { duplex?: 'half' } = { method, headers, body, duplex, signal: options.signal };
      return await fetch(url, init);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new ConnectionError(this.baseUrl, reasonOf(error));
    }
  }
}

/** `bytes` as a stream, reporting each chunk as fetch pulls it (fetch pulls as the socket drains). */
function chunked(bytes: Buffer, onProgress: Progress): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= bytes.length) {
        controller.close();
        return;
      }
      const chunk = bytes.subarray(sent, sent + uploadChunkBytes);
      sent += chunk.length;
      controller.enqueue(chunk);
      onProgress(sent, bytes.length);
    },
  });
}

/** fetch says only "fetch failed": the reason is in its cause (ECONNREFUSED, ENOTFOUND...). */
function reasonOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (isObject(cause) && typeof cause.code === 'string') {
    if (cause.code === 'ECONNREFUSED') return 'connection refused';
    if (cause.code === 'ENOTFOUND') return 'unknown host';
    return typeof cause.message === 'string' ? cause.message : cause.code;
  }
  if (cause instanceof Error) return cause.message;
  return error instanceof Error ? error.message : String(error);
}

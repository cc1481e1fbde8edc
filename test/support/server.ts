// A real fnvm server on a free loopback port with its own data directory, for API tests.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type Server } from '../../src/app.js';
import { configFromEnv, type Config } from '../../src/config.js';

export interface TestServer {
  server: Server;
  url: string;
  dataDir: string;
  api(path: string, init?: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  stop(options?: { keepData?: boolean }): Promise<void>;
}

/** `sendToken`: api() (and so waitForState, deployReady) sends the server's API token unless told other headers. */
export async function startTestServer(overrides: Partial<Config> = {}, options: { sendToken?: boolean } = {}): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'fnvm-api-'));
  const config: Config = { ...configFromEnv(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'warn', ...overrides };
  let server: Server;
  try {
    server = await startServer(config, (m) => process.stderr.write(`[fnvm] ${m}\n`));
  } catch (error) {
    if (!overrides.dataDir) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  const url = server.url;
  return {
    server,
    url,
    dataDir,
    async api(path, init = {}) {
      const token: Record<string, string> = options.sendToken && config.apiToken ? { authorization: `Bearer ${config.apiToken}` } : {};
      const headers: Record<string, string> = { ...token, ...init.headers };
      let body: string | undefined = init.raw;
      if (init.body !== undefined) {
        body = JSON.stringify(init.body);
        headers['content-type'] = 'application/json';
      } else if (init.raw !== undefined) {
        headers['content-type'] ??= 'application/json';
      }
      const response = await fetch(url + path, { method: init.method ?? 'GET', headers, body });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : undefined, headers: response.headers };
    },
    async stop(options = {}) {
      await server.close();
      if (!options.keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls GET /v1/functions/{id} like the documented client does, until ready or error. */
export async function waitForState(server: TestServer, id: string, timeoutMs = 120_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await server.api(`/v1/functions/${id}`);
    if (body.item.state === 'ready' || body.item.state === 'error') return body.item;
    if (Date.now() > deadline) throw new Error(`function ${id} still ${body.item.state} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Creates a function and waits for it; fails the test unless it ends ready. */
export async function deployReady(server: TestServer, body: Record<string, unknown>): Promise<any> {
  const created = await server.api('/v1/functions', { method: 'POST', body });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const item = await waitForState(server, created.body.id);
  assert.equal(item.state, 'ready', item.error);
  return item;
}

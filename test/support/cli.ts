// The real command line, `node dist/src/cli.js serve`, on a free loopback port: for signal and log tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../../src/paths.js';

export interface CliServer {
  process: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once it is listening; rejects with its output if it exits first. */
export async function startCli(env: Record<string, string>): Promise<CliServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(repoRoot, 'dist/src/cli.js'), 'serve'], {
    env: { ...process.env, FNVM_LOG_LEVEL: 'warn', ...env, FNVM_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let log = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      stderr += chunk.toString();
      if (stderr.includes('listening on')) resolve(); // the CLI's own line, after the API is up
    });
    void exited.then(() => reject(new Error(`server exited early:\n${log}`)));
  });
  return { process: child, url: `http://127.0.0.1:${port}`, exited, output: () => log };
}

// Runs the built CLI, `node dist/src/cli.js ARGS`, as a user would, and collects what it printed and its exit code.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../src/paths.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` is added to a copy of this process's environment without any FNVM_URL or FNVM_API_TOKEN of its own. */
export function runCli(args: string[], env: Record<string, string>, options: { cwd?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  const { FNVM_URL: _url, FNVM_API_TOKEN: _token, ...inherited } = process.env;
  const child = spawn(process.execPath, [join(repoRoot, 'dist/src/cli.js'), ...args], {
    env: { ...inherited, ...env },
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timeoutMs = options.timeoutMs ?? 180_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs); // by its own handle, never by name
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (signal) reject(new Error(`fnvm ${args.join(' ')} killed by ${signal} (after ${timeoutMs} ms?)\nstdout: ${stdout}\nstderr: ${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

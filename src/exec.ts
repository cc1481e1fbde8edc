// Runs host commands: the image build, network setup and VM state files all shell out through here.
import { execFileSync, spawn } from 'node:child_process';

export class CommandError extends Error {
  override name = 'CommandError';
}

/** Runs `command` and resolves with its stdout; fails with its stderr. */
export function run(command: string, args: string[], options: { cwd?: string; input?: Buffer } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', (error) => reject(new CommandError(`${command}: ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new CommandError(`${command} ${args.join(' ')} exited with ${code}: ${err.trim().slice(-2000)}`));
    });
    child.stdin.end(options.input);
  });
}

/** True if `command` is on the PATH. */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

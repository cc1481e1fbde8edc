// Runs a guest agent as a plain local process over stdin/stdout: for agent unit tests and the benchmark floor.
import { spawn, type ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { agentPaths } from '../paths.js';
import { GuestChannel } from './channel.js';
import type { Runtime } from './protocol.js';

export interface LocalAgent {
  channel: GuestChannel;
  process: ChildProcess;
  /** What the agent wrote to its own stderr (not to an invocation). */
  stderr(): string;
  stop(): Promise<void>;
}

const commands: Record<Runtime, [string, string[]]> = {
  node: [process.execPath, [agentPaths.node]],
  python: ['python3', ['-u', agentPaths.python]],
};

export function startLocalAgent(runtime: Runtime, env: Record<string, string> = {}): LocalAgent {
  const [command, args] = commands[runtime];
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
  const channel = new GuestChannel(stream);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    channel,
    process: child,
    stderr: () => stderr,
    async stop() {
      channel.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

// Every QEMU process this host process started, so none outlives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous 'exit' handlers may only do synchronous work: a SIGKILL per PID is.
  process.on('exit', () => {
    for (const child of live) if (child.pid) safeKill(child.pid);
  });
}

function safeKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

// setpriv --pdeathsig makes the kernel kill QEMU if this process dies without running its exit hook (kill -9).
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));

/**
 * Starts a tracked child; it is SIGKILLed when this process exits, however it exits. With `netns`, it runs
 * in that network namespace (nsenter and setpriv both exec, so the PID is the command's own).
 */
export function spawnTracked(command: string, args: string[], options: { netns?: string; nice?: number } = {}): ChildProcess {
  installExitHook();
  let argv = [command, ...args];
  if (options.nice) argv = ['nice', '-n', String(options.nice), ...argv];
  if (setpriv) argv = [setpriv, '--pdeathsig', 'SIGKILL', '--', ...argv];
  if (options.netns) argv = ['nsenter', `--net=${options.netns}`, '--', ...argv];
  const [file, ...rest] = argv as [string, ...string[]];
  const child = spawn(file, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * Sets the niceness of every thread of `pid` (Linux keeps it per thread, and QEMU's vCPU threads inherited the
 * value they started with). Lowering it needs root; without, the process keeps its value.
 */
export function setThreadsNiceness(pid: number, nice: number): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // gone
  }
  for (const tid of tids) {
    try {
      setPriority(Number(tid), nice);
    } catch {
      // not permitted (not root), or the thread ended
    }
  }
}

export function killTracked(child: ChildProcess): void {
  if (child.pid && child.exitCode === null && child.signalCode === null) safeKill(child.pid);
}

export function liveProcessCount(): number {
  return live.size;
}

/** PIDs of the tracked processes still running. */
export function livePids(): number[] {
  return [...live].flatMap((child) => (child.pid === undefined ? [] : [child.pid]));
}

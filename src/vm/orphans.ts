// After a crash of a previous fnvm process: remove its per-VM run directory and end any QEMU still using it.
// (QEMU runs under --pdeathsig SIGKILL, so normally none is left; this is the second line of defence.)
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const runDirPattern = /^fnvm-(\d+)$/;

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** PIDs of processes whose command line mentions `path`. */
export function processesUsing(path: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && cmdline(entry).includes(path))
    .map(Number);
}

export function runDirFor(parent: string, pid = process.pid): string {
  return join(parent, `fnvm-${pid}`);
}

/** Reaps run directories of fnvm processes that no longer exist. Returns how many QEMU processes it ended. */
export function reapOrphans(parent: string, log: (message: string) => void): number {
  let killed = 0;
  for (const entry of existsSync(parent) ? readdirSync(parent) : []) {
    const owner = runDirPattern.exec(entry)?.[1];
    if (!owner || Number(owner) === process.pid || existsSync(`/proc/${owner}`)) continue;
    const dir = join(parent, entry);
    for (const pid of processesUsing(`${dir}/`)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
    log(`reaped ${dir} left by fnvm process ${owner}${killed ? ` (ended ${killed} QEMU processes)` : ''}`);
  }
  return killed;
}

// WAL checkpoints off the request path. SQLite's automatic checkpoint runs inside the commit that crosses its
// threshold, on the thread that commits: with better-sqlite3 that is the event loop, for up to tens of ms
// (copying pages, two fsyncs). A worker thread with its own connection checkpoints instead, often enough that
// the WAL stays small; the main connection keeps a high autocheckpoint threshold as a backstop.
import { Worker } from 'node:worker_threads';

/** How often the worker checkpoints: the WAL holds about this long's worth of writes. */
export const checkpointIntervalMs = 250;

/** The main connection checkpoints by itself only past this many WAL pages (16 MiB): the worker fell behind. */
export const backstopCheckpointPages = 4096;

export interface Checkpointer {
  stop(): Promise<void>;
}

export function startCheckpointer(path: string): Checkpointer {
  const worker = new Worker(new URL('./checkpoint-worker.js', import.meta.url), {
    workerData: { path, intervalMs: checkpointIntervalMs },
  });
  worker.unref(); // a store that is never closed must not keep the process alive
  worker.on('error', () => {}); // it only ever speeds things up: the backstop covers a dead worker
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      worker.ref(); // closing waits for it
      worker.postMessage('stop');
      await exited;
    },
  };
}

// Runs in a worker thread (see checkpointer.ts): checkpoints the database's WAL every interval, so copying pages
// into the database file, and the fsyncs that go with it, never block the event loop that answers requests.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { path, intervalMs } = settings(workerData);
const db = new Database(path);
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)'); // copies what no reader still needs; never waits for a lock
  } catch {
    // A failed round is retried at the next tick; the main connection's autocheckpoint is the backstop.
  }
}, intervalMs);

parentPort?.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort?.close();
});

function settings(data: unknown): { path: string; intervalMs: number } {
  if (typeof data === 'object' && data !== null && 'path' in data && 'intervalMs' in data) {
    const { path, intervalMs } = data;
    if (typeof path === 'string' && typeof intervalMs === 'number') return { path, intervalMs };
  }
  throw new Error('checkpoint worker: workerData must be { path, intervalMs }');
}

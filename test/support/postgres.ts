// A real PostgreSQL for tests and bench/store.ts: Debian's server binaries (postgresql-15), a cluster made by
// initdb in a temporary directory and served from it on a unix socket there (no TCP), fsync on as by default.
// As root the server runs as the unprivileged `postgres` user (it refuses root), through setpriv, with
// --pdeathsig so it cannot outlive the test process. Each createDatabase() is a new empty database; stop()
// shuts the server down (fast: open connections are ended) by its PID and removes the directory. Without
// PostgreSQL installed, start fails and says so: the tests that need it fail, they never skip.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';

const INSTALL_ROOT = '/usr/lib/postgresql';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

export interface TestPostgres {
  /** The directory of the cluster and its socket. */
  dir: string;
  /** A URL of this server (for a database that may not exist). */
  url(database: string): string;
  /** Creates a new empty database and returns its URL. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or an error that says how to install one. */
function binDir(): string {
  const versions = existsSync(INSTALL_ROOT) ? readdirSync(INSTALL_ROOT).filter((v) => existsSync(join(INSTALL_ROOT, v, 'bin', 'initdb'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) {
    throw new Error(`PostgreSQL is not installed (no ${INSTALL_ROOT}/<version>/bin/initdb): these tests run a real server; apt-get install postgresql-15`);
  }
  return join(INSTALL_ROOT, newest, 'bin');
}

/** setpriv's arguments that run the server's programs as a user it accepts, killed if this process dies. */
function runAs(dir: string): string[] {
  if (process.getuid?.() !== 0) return ['--pdeathsig', 'KILL', '--'];
  const entry = readFileSync('/etc/passwd', 'utf8').split('\n').map((line) => line.split(':')).find((fields) => fields[0] === 'postgres');
  const [uid, gid] = [Number(entry?.[2]), Number(entry?.[3])];
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error('running as root, PostgreSQL needs an unprivileged user: no "postgres" user (Debian\'s postgresql-15 package creates it)');
  }
  chownSync(dir, uid, gid);
  return [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--pdeathsig', 'KILL', '--'];
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'fnvm-pg-'));
  let server: ChildProcess | undefined;
  try {
    const asUser = runAs(dir);
    const data = join(dir, 'data');
    const init = spawnSync('setpriv', [...asUser, join(bin, 'initdb'), '-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C'], { encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`initdb failed (${init.status ?? init.signal}): ${init.stderr || init.error?.message}`);
    const logPath = join(dir, 'postgres.log');
    const log = openSync(logPath, 'a');
    // Only the socket in dir (mode 0700: its owner, and root), no TCP listener.
    server = spawn('setpriv', [...asUser, join(bin, 'postgres'), '-D', data, '-k', dir, '-c', 'listen_addresses=', '-c', 'unix_socket_permissions=0700'], {
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const url = (database: string) => `postgresql://postgres@localhost/${database}?host=${encodeURIComponent(dir)}`;
    await waitUntilReady(server, url('postgres'), logPath);
    let next = 0;
    const running = server;
    return {
      dir,
      url,
      async createDatabase() {
        const name = `fnvm_test_${next++}`;
        await withClient(url('postgres'), (client) => client.query(`CREATE DATABASE ${name}`));
        return url(name);
      },
      async stop() {
        await stopServer(running);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    if (server) await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function withClient<T>(url: string, use: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

async function waitUntilReady(server: ChildProcess, url: string, logPath: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`postgres exited (${server.exitCode ?? server.signalCode}) before accepting connections:\n${readFileSync(logPath, 'utf8')}`);
    }
    try {
      await withClient(url, (client) => client.query('SELECT 1'));
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within ${READY_TIMEOUT_MS} ms: ${String(error)}\n${readFileSync(logPath, 'utf8')}`);
    }
    await sleep(50);
  }
}

/** SIGINT is PostgreSQL's fast shutdown; SIGKILL if it has not exited in time. */
async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null || server.pid === undefined) return;
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  process.kill(server.pid, 'SIGINT');
  const timer = setTimeout(() => server.pid !== undefined && server.exitCode === null && process.kill(server.pid, 'SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

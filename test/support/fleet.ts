// Fleet hosts for tests: `fnvm serve` processes on one real PostgreSQL (support/postgres.ts), each with its host id
// and data directory under one temporary root, no network and no warm pool; stop() kills them (-9), waits until
// their QEMU processes are gone too, stops the database and removes the root.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processesUsing } from '../../src/vm/orphans.js';
import { startCli, type CliServer } from './cli.js';
import { eventually } from './eventually.js';
import { startPostgres, type TestPostgres } from './postgres.js';

export class TestFleet {
  readonly root = mkdtempSync(join(tmpdir(), 'fnvm-fleet-'));
  /** The current process of each host by name (a restarted host replaces its killed one). */
  readonly hosts = new Map<string, CliServer>();
  private readonly children: CliServer[] = [];
  private postgres: TestPostgres | undefined;
  private databaseUrlNow: string | undefined;

  constructor(readonly secret: string) {}

  /** Starts the database the hosts share (before the first host). */
  async open(): Promise<void> {
    this.postgres = await startPostgres();
    this.databaseUrlNow = await this.postgres.createDatabase();
  }

  get databaseUrl(): string {
    return this.databaseUrlNow ?? assert.fail('the fleet\'s database is not open');
  }

  async start(name: string, env: Record<string, string> = {}): Promise<CliServer> {
    const host = await startCli({
      FNVM_DATABASE_URL: this.databaseUrl, FNVM_CLUSTER_SECRET: this.secret, FNVM_HOST_ID: name, FNVM_DATA_DIR: this.dataDir(name),
      FNVM_NETWORK: 'none', FNVM_POOL_SIZE: '0', FNVM_LOG_LEVEL: 'warn', ...env,
    });
    this.children.push(host);
    this.hosts.set(name, host);
    return host;
  }

  url(name: string): string {
    return this.hosts.get(name)?.url ?? assert.fail(`no host ${name}`);
  }

  dataDir(name: string): string {
    return join(this.root, name);
  }

  async stop(): Promise<void> {
    for (const child of this.children) if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    await Promise.all(this.children.map((child) => child.exited));
    for (const child of this.children) {
      const runDir = join(tmpdir(), `fnvm-${child.process.pid}`);
      await eventually('the hosts\' QEMU processes to end', async () => (processesUsing(`${runDir}/`).length === 0 ? true : undefined), 15_000);
    }
    await this.postgres?.stop();
    rmSync(this.root, { recursive: true, force: true });
  }
}

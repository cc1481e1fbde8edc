// Function changes across the fleet: each host tells the others what changed through it with PostgreSQL's
// NOTIFY (the id only: a payload is limited to 8000 bytes), and turns what the others tell it into the same
// changes, read back from the store, for its own event streams (GET /v1/events). LISTEN needs a connection of
// its own; it is reopened after a failure (changes in between are missed: the console re-reads on reconnect).
import { EventEmitter } from 'node:events';
import { sql, type QueryExecutorProvider } from 'kysely';
import { Client } from 'pg';
import type { FunctionChange } from '../functions/service.js';
import type { FunctionRecord } from '../store/types.js';

const channel = 'fnvm_function_changes';
const reconnectMs = 1000;

export interface ChangeFeedOptions {
  databaseUrl: string;
  hostId: string;
  /** The current record of a function another host changed (undefined once it is gone). */
  read: (id: string) => Promise<FunctionRecord | undefined>;
  log: (message: string) => void;
}

/** What a notification says: which host made a change to which function. */
function notePayload(host: string, id: string, deleted: boolean): string {
  return JSON.stringify({ host, id, deleted });
}

/**
 * Tells every host that a function's row changed (its owner, by a claim); inside a transaction, on commit. The
 * other hosts' feeds read the function back like any change, so their views and owner caches follow.
 */
export async function notifyChange(db: QueryExecutorProvider, hostId: string, functionId: string): Promise<void> {
  await sql`SELECT pg_notify(${channel}, ${notePayload(hostId, functionId, false)})`.execute(db);
}

/** A notification as this module sends it, checked field by field (any database user can NOTIFY). */
function parse(payload: string | undefined): { host: string; id: string; deleted: boolean } | undefined {
  try {
    const value: unknown = JSON.parse(payload ?? '');
    if (typeof value !== 'object' || value === null) return undefined;
    const host: unknown = Reflect.get(value, 'host');
    const id: unknown = Reflect.get(value, 'id');
    const deleted: unknown = Reflect.get(value, 'deleted');
    return typeof host === 'string' && typeof id === 'string' && typeof deleted === 'boolean' ? { host, id, deleted } : undefined;
  } catch {
    return undefined;
  }
}

export class ChangeFeed {
  /** Emits 'change' with a FunctionChange: this host's changes and the other hosts'. */
  readonly changes = new EventEmitter().setMaxListeners(0);
  private client: Client | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ChangeFeedOptions) {}

  async start(): Promise<void> {
    const client = new Client({ connectionString: this.options.databaseUrl });
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    client.on('notification', (message) => {
      if (message.channel === channel) void this.received(message.payload);
    });
    await client.connect();
    await client.query(`LISTEN ${channel}`);
    this.client = client;
  }

  /** A change made through this host: shown here at once, and told to the others. */
  publish(change: FunctionChange): void {
    this.changes.emit('change', change);
    const deleted = 'deleted' in change;
    const payload = notePayload(this.options.hostId, deleted ? change.deleted : change.item.id, deleted);
    this.client?.query('SELECT pg_notify($1, $2)', [channel, payload]).catch((error: unknown) => {
      this.options.log(`fleet: a change could not be told to the other hosts: ${error instanceof Error ? error.message : String(error)}`);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async received(payload: string | undefined): Promise<void> {
    const note = parse(payload);
    if (!note || note.host === this.options.hostId) return;
    const record = note.deleted ? undefined : await this.options.read(note.id).catch(() => undefined);
    this.changes.emit('change', record ? { item: record } : { deleted: note.id } satisfies FunctionChange);
  }

  private lost(client: Client, error: Error): void {
    if (this.closed || this.client !== client) return;
    this.client = undefined;
    this.options.log(`fleet: the change feed's connection failed (${error.message}); reconnecting`);
    this.reconnect();
  }

  private reconnect(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.start().catch((error: unknown) => {
        this.options.log(`fleet: the change feed could not reconnect: ${error instanceof Error ? error.message : String(error)}`);
        this.reconnect();
      });
    }, reconnectMs);
  }
}

// The fleet's package zips in the shared PostgreSQL database (package_blobs, migration 0009), by SHA-256.
// Deleting one races with a create elsewhere that is about to use the same package: that create saved (or
// touched) the blob before storing its record, so a blob saved within the grace period is never deleted, and a
// delete that loses the race against a touch sees the touched row (PostgreSQL rechecks the row's own condition
// after waiting for its lock). A blob left over that way is deleted by a later sweep: an orphan, never a loss.
import { sql, type Kysely } from 'kysely';
import type { PackageBlobStore } from '../packages/types.js';
import { dbNow } from './registry.js';

export interface PackageBlobsTable {
  sha256: string;
  zip: Buffer;
  size: number;
  /** Unix ms on the database's clock: when it was last saved (or saved again for another function). */
  stored_at: number;
}

/** The columns of functions this reads: which packages are in use. */
export interface PackageUsersTable {
  package_sha256: string | null;
}

export interface PackageBlobTables {
  package_blobs: PackageBlobsTable;
  functions: PackageUsersTable;
}

export interface PackageBlobsOptions {
  /** A blob saved this recently is kept even if no function uses it yet: longer than any put-to-record gap. */
  graceMs?: number;
  /** Zips are read in pieces this large (node-postgres reads bytea as hex text: a 50 MiB zip would be 100 MiB). */
  chunkBytes?: number;
}

export const defaultGraceMs = 60 * 60_000;

export class PackageBlobs implements PackageBlobStore {
  private readonly graceMs: number;
  private readonly chunkBytes: number;

  constructor(private readonly db: Kysely<PackageBlobTables>, options: PackageBlobsOptions = {}) {
    this.graceMs = options.graceMs ?? defaultGraceMs;
    this.chunkBytes = options.chunkBytes ?? 8 * 2 ** 20;
  }

  async save(sha256: string, zip: Buffer): Promise<void> {
    // Stored already (another function's, or this one's before): a touch, without sending the zip again.
    const touched = await this.db.updateTable('package_blobs').set({ stored_at: dbNow }).where('sha256', '=', sha256).executeTakeFirst();
    if (touched.numUpdatedRows > 0n) return;
    await this.db.insertInto('package_blobs')
      .values({ sha256, zip, size: zip.length, stored_at: dbNow })
      .onConflict((oc) => oc.column('sha256').doUpdateSet({ stored_at: dbNow }))
      .execute();
  }

  async load(sha256: string): Promise<Buffer | undefined> {
    const row = await this.db.selectFrom('package_blobs').select('size').where('sha256', '=', sha256).executeTakeFirst();
    if (!row) return undefined;
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < row.size; offset += this.chunkBytes) {
      // substring() counts from 1. Blobs never change (content-addressed), so the pieces belong together.
      const piece = await this.db.selectFrom('package_blobs')
        .select(sql<Buffer>`substring(zip from ${offset + 1} for ${this.chunkBytes})`.as('piece'))
        .where('sha256', '=', sha256)
        .executeTakeFirst();
      if (!piece) return undefined; // deleted meanwhile
      chunks.push(piece.piece);
    }
    return Buffer.concat(chunks);
  }

  async stored(sha256s: string[]): Promise<Set<string>> {
    if (sha256s.length === 0) return new Set();
    const rows = await this.db.selectFrom('package_blobs').select('sha256').where('sha256', 'in', sha256s).execute();
    return new Set(rows.map((r) => r.sha256));
  }

  async remove(sha256: string): Promise<void> {
    await this.unused().where('sha256', '=', sha256).execute();
  }

  /** Deletes every blob no function uses that is past its grace; resolves to how many. */
  async sweep(): Promise<number> {
    const { numDeletedRows } = await this.unused().executeTakeFirst();
    return Number(numDeletedRows);
  }

  /** One statement: the grace and the use are checked on the row it deletes. */
  private unused() {
    return this.db.deleteFrom('package_blobs')
      .where('stored_at', '<', sql<number>`${dbNow} - ${this.graceMs}`)
      .where((eb) => eb.not(eb.exists(
        eb.selectFrom('functions').select(sql`1`.as('used')).whereRef('functions.package_sha256', '=', 'package_blobs.sha256'),
      )));
  }
}

// A fleet host's packages: its own PackageStore, plus the fleet's copy of every zip in the shared database, so
// that whichever host ends up holding a function can deploy it. A put stores the zip locally (validated, its
// image built) and then in the database, before the create or update that uses it stores its record: once a
// record names a package, the database has it. A host about to deploy a package it lacks fetches the zip and puts
// it into its own store like an upload (validated and built again: the database is shared, so trusted no more
// than a client). Local copies follow the local store's rules; the database's copy goes with the last function
// in the database that uses it.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SingleFlight } from '../single-flight.js';
import { PackageError, type PackageBlobStore, type PackageFile, type PackageInfo, type PackageRepository } from './types.js';

export class SharedPackages implements PackageRepository {
  /** Fetches under way, one per package: deploys of functions sharing a package wait for the same one. */
  private readonly fetches = new SingleFlight<string, void>();

  constructor(
    private readonly local: PackageRepository,
    private readonly blobs: PackageBlobStore,
    private readonly log: (message: string) => void,
  ) {}

  async put(zip: Buffer): Promise<PackageInfo> {
    const info = await this.local.put(zip);
    await this.blobs.save(info.sha256, zip);
    return info;
  }

  has(sha256: string): boolean {
    return this.local.has(sha256);
  }

  ensure(sha256: string): Promise<void> {
    if (this.local.has(sha256)) return Promise.resolve();
    return this.fetches.run(sha256, () => this.fetch(sha256));
  }

  imagePath(sha256: string): string {
    return this.local.imagePath(sha256);
  }

  zipPath(sha256: string): string {
    return this.local.zipPath(sha256);
  }

  files(sha256: string): Promise<PackageFile[]> {
    return this.local.files(sha256);
  }

  readFile(sha256: string, path: string): Promise<Buffer> {
    return this.local.readFile(sha256, path);
  }

  /** This host's copy goes; the database's only if no function in the database uses the package. */
  async remove(sha256: string): Promise<void> {
    await this.local.remove(sha256);
    await this.blobs.remove(sha256);
  }

  /**
   * The local sweep; then packages in use that are here but not in the database (stored before the fleet kept
   * them, or by a host that died between its put and the upload) are uploaded, so other hosts can take them over.
   */
  async sweep(inUse: Set<string>): Promise<void> {
    await this.local.sweep(inUse);
    const here = [...inUse].filter((sha256) => this.local.has(sha256));
    const stored = await this.blobs.stored(here);
    for (const sha256 of here) {
      if (stored.has(sha256)) continue;
      await this.blobs.save(sha256, await readFile(this.local.zipPath(sha256)));
      this.log(`package ${sha256}: uploaded to the shared database`);
    }
  }

  private async fetch(sha256: string): Promise<void> {
    const zip = await this.blobs.load(sha256);
    if (!zip) throw new Error(`package ${sha256} is neither on this host nor in the shared database`);
    const actual = createHash('sha256').update(zip).digest('hex');
    if (actual !== sha256) throw new Error(`package ${sha256}: the shared database holds a zip whose SHA-256 is ${actual}`);
    try {
      await this.local.put(zip);
    } catch (error) {
      if (error instanceof PackageError) throw new Error(`package ${sha256} from the shared database is refused: ${error.message}`);
      throw error;
    }
    this.log(`package ${sha256}: fetched from the shared database (${zip.length} bytes)`);
  }
}

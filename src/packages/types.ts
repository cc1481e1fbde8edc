// A deployment package: a zip of a function's files (its code, node_modules, vendored Python packages).

/** Lambda's limits for a directly uploaded package (bytes, as AWS counts them: MiB). */
export const packageLimits = { zippedBytes: 50 * 2 ** 20, unpackedBytes: 250 * 2 ** 20, entries: 10_000 } as const;

/** What a function item shows of its package. */
export interface PackageInfo {
  /** Hex SHA-256 of the zip as uploaded: the package's identity in the content-addressed store. */
  sha256: string;
  /** Bytes of the zip. */
  size: number;
  /** Bytes of all files once unzipped. */
  unpacked_size: number;
  /** Number of files (directories not counted). */
  files: number;
}

/** A package refused as uploaded (not a zip, a path that escapes, a zip bomb...): the message is for the user. */
export class PackageError extends Error {
  override name = 'PackageError';
}

/** One file of a package, as the console lists them. */
export interface PackageFile {
  path: string;
  size: number;
}

/** What the functions domain needs of the host's package store (src/packages/store.ts). */
export interface PackageRepository {
  /** Validates the zip and stores it (once per content) with the disk image VMs mount; PackageError if refused. */
  put(zip: Buffer): Promise<PackageInfo>;
  /** Whether the package is stored on this host's disk. */
  has(sha256: string): boolean;
  /**
   * Makes a stored function's package available on this host before it deploys there: in a fleet it may have
   * been uploaded through another host (src/packages/shared.ts); the host's own store has nothing to fetch.
   */
  ensure(sha256: string): Promise<void>;
  imagePath(sha256: string): string;
  zipPath(sha256: string): string;
  files(sha256: string): Promise<PackageFile[]>;
  readFile(sha256: string, path: string): Promise<Buffer>;
  /** No function uses the package any more. */
  remove(sha256: string): Promise<void>;
  /** Removes every stored package not in `inUse` (left behind by a crash). */
  sweep(inUse: Set<string>): Promise<void>;
}

/** The fleet's copy of every package (the shared database): what a host fetches a package it lacks from. */
export interface PackageBlobStore {
  /** Stores the zip (once per content) and marks it as just used, so that it outlives the grace of remove(). */
  save(sha256: string, zip: Buffer): Promise<void>;
  /** The zip as stored; undefined if there is none. */
  load(sha256: string): Promise<Buffer | undefined>;
  /** Which of these are stored. */
  stored(sha256s: string[]): Promise<Set<string>>;
  /** Deletes the blob if no function uses it and it was not saved recently (a create may be about to use it). */
  remove(sha256: string): Promise<void>;
}

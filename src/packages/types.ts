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

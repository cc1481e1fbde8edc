// The ext4 image of an unpacked package, made by mkfs.ext4 straight from the directory (-d): no journal (it is
// mounted read-only), owned by root, sized to what the files need, then extended (sparse) to the task disk's
// fixed size. A failure here is the host's (Error), not the package's: the package was checked before.
import { rm, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { run } from '../exec.js';
import { taskDiskBytes } from '../vm/task-disk.js';
import type { ZipInspection } from './zip.js';

const blockBytes = 4096;
const inodeBytes = 256;
const blocksPerGroup = 32768;
/** Inodes 1-11 are ext4's own (the root directory is 2, lost+found 11). */
const reservedInodes = 11;

export class ImageError extends Error {
  override name = 'ImageError';
}

export interface ImageSize {
  blocks: number;
  inodes: number;
}

/** Builds `image` (a new file, removed again if mkfs fails) with the tree at `root`, which `inspection` lists. */
export async function buildImage(root: string, inspection: ZipInspection, image: string, mkfs = 'mkfs.ext4'): Promise<void> {
  let size = imageSize(inspection);
  for (;;) {
    try {
      await makeFilesystem(mkfs, root, image, size);
      break;
    } catch (error) {
      await rm(image, { force: true });
      // The estimate is generous, but should mkfs still run out of room, a larger filesystem will do.
      const outOfRoom = /could not allocate|no free space|no space left/i.test((error as Error).message);
      const larger = { blocks: size.blocks * 2, inodes: size.inodes * 2 };
      if (!outOfRoom || larger.blocks * blockBytes > taskDiskBytes) throw new ImageError(`building the package's image failed: ${(error as Error).message}`);
      size = larger;
    }
  }
  try {
    const built = (await stat(image)).size;
    if (built > taskDiskBytes) throw new ImageError(`the package's image is ${built} bytes: more than the task disk's ${taskDiskBytes}`);
    await truncate(image, taskDiskBytes);
  } catch (error) {
    await rm(image, { force: true });
    throw error;
  }
}

async function makeFilesystem(mkfs: string, root: string, image: string, size: ImageSize): Promise<void> {
  const args = [
    '-q', '-F', '-d', root, '-O', '^has_journal', '-E', 'root_owner=0:0', '-L', 'fnvm-task', '-b', String(blockBytes),
    // No blocks reserved for root: nothing is ever written to the image once built.
    '-m', '0', '-N', String(size.inodes), image, String(size.blocks),
  ];
  // mkfs copies each file's owner: not running as root, it runs in a user namespace where this user is root.
  if (process.getuid?.() === 0) await run(mkfs, args, { cwd: dirname(image) });
  else await run('unshare', ['--map-root-user', mkfs, ...args], { cwd: dirname(image) });
}

/**
 * Blocks and inodes for the package's files: each file's data in whole blocks (at least one), each directory's
 * entries, the inode table, and per block group its bitmaps and superblock/descriptor backups, with a margin.
 */
export function imageSize(inspection: ZipInspection): ImageSize {
  let dataBlocks = 0;
  const dirEntryBytes = new Map<string, number>([['', dirEntry('lost+found')]]);
  const dirs = new Set<string>(['']);
  const add = (parent: string, name: string) => dirEntryBytes.set(parent, (dirEntryBytes.get(parent) ?? 0) + dirEntry(name));
  for (const entry of inspection.entries) {
    const segments = entry.path.split('/');
    for (let i = 1; i <= segments.length; i++) {
      const path = segments.slice(0, i).join('/');
      if (i < segments.length || entry.kind === 'directory') {
        if (dirs.has(path)) continue;
        dirs.add(path);
      }
      add(segments.slice(0, i - 1).join('/'), segments[i - 1] ?? '');
    }
    if (entry.kind === 'file') dataBlocks += Math.max(1, Math.ceil(entry.size / blockBytes));
  }
  let dirBlocks = 0;
  for (const dir of dirs) {
    // A block holds (4096 - 12 for the checksum tail) of entries; past one block, an htree index block comes first.
    const blocks = Math.max(1, Math.ceil((dirEntryBytes.get(dir) ?? 0) / (blockBytes - 12)));
    dirBlocks += blocks === 1 ? 1 : blocks + 1 + Math.ceil(blocks / 500);
  }
  const files = inspection.info.files;
  const inodes = reservedInodes + files + dirs.size + 64;
  const inodeTableBlocks = Math.ceil((inodes * inodeBytes) / blockBytes);
  const lostAndFound = 4;
  const content = dataBlocks + dirBlocks + inodeTableBlocks + lostAndFound;
  const groups = Math.ceil(content / blocksPerGroup) + 1;
  // Per group: two bitmaps, inode-table rounding, and (in backup groups) a superblock, descriptors and reserved GDT.
  const metadata = 256 + groups * 80;
  const blocks = Math.ceil((content + metadata) * 1.02);
  return { blocks: Math.max(blocks, 512), inodes };
}

/** Bytes of one ext4 directory entry: 8 of header and the name, padded to 4. */
function dirEntry(name: string): number {
  return 8 + Math.ceil(Buffer.byteLength(name) / 4) * 4;
}

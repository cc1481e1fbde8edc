// Host programs fnvm needs, and installing the missing ones with apt when running as root.
import { existsSync } from 'node:fs';
import { hasCommand, run } from './exec.js';

/** A program on the PATH, or a file (headers), and the Debian package that provides it. */
const needs: Array<{ command: string; pkg: string } | { file: string; pkg: string }> = [
  { command: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { command: 'mkfs.ext4', pkg: 'e2fsprogs' },
  { command: 'cpio', pkg: 'cpio' },
  { command: 'gcc', pkg: 'gcc' }, // the Node agent's native helper (guest/node/fnvm_sys.c)
  { file: '/usr/include/stdio.h', pkg: 'libc6-dev' }, // gcc's recommends, skipped by --no-install-recommends
  { command: 'setpriv', pkg: 'util-linux' },
  { command: 'nsenter', pkg: 'util-linux' },
  { command: 'ip', pkg: 'iproute2' },
  { command: 'nft', pkg: 'nftables' },
  { command: 'lz4', pkg: 'lz4' }, // functions' snapshots (SnapStart) are lz4 streams
];

export async function ensureSystemPackages(log: (message: string) => void): Promise<void> {
  const present = (n: (typeof needs)[number]) => ('file' in n ? existsSync(n.file) : hasCommand(n.command));
  const missing = [...new Set(needs.filter((n) => !present(n)).map((n) => n.pkg))];
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) throw new Error(`missing system packages; run as root: ${command}`);
  log(`installing system packages: ${missing.join(' ')}`);
  process.env.DEBIAN_FRONTEND = 'noninteractive';
  await run('apt-get', ['update']);
  await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing]);
}

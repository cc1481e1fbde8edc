// Host programs fnvm needs, and installing the missing ones with apt when running as root.
import { hasCommand, run } from './exec.js';

const needs: Array<{ command: string; pkg: string }> = [
  { command: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
  { command: 'mkfs.ext4', pkg: 'e2fsprogs' },
  { command: 'cpio', pkg: 'cpio' },
  { command: 'gcc', pkg: 'gcc' }, // the Node agent's native helper (guest/node/fnvm_sys.c)
  { command: 'gcc', pkg: 'libc6-dev' },
  { command: 'setpriv', pkg: 'util-linux' },
  { command: 'nsenter', pkg: 'util-linux' },
  { command: 'ip', pkg: 'iproute2' },
  { command: 'nft', pkg: 'nftables' },
];

export async function ensureSystemPackages(log: (message: string) => void): Promise<void> {
  const missing = [...new Set(needs.filter((n) => !hasCommand(n.command)).map((n) => n.pkg))];
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) throw new Error(`missing system packages; run as root: ${command}`);
  log(`installing system packages: ${missing.join(' ')}`);
  process.env.DEBIAN_FRONTEND = 'noninteractive';
  await run('apt-get', ['update']);
  await run('apt-get', ['install', '-y', '--no-install-recommends', ...missing]);
}

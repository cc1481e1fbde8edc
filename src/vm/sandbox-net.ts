// Outbound networking without reach into the host. VMs with network 'outbound' run their QEMU (and so
// its user-mode network stack) inside a dedicated network namespace: "the host" as the guest sees it
// (10.0.2.2) is that namespace's empty loopback, not the host's. The namespace's only link is a veth to
// the host, which forwards and masquerades its traffic outward but drops anything addressed to the host
// itself. Every VM has its own user-mode network, so VMs cannot address each other at all.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { run } from '../exec.js';

export const sandbox = {
  netns: 'fnvm-sandbox',
  hostVeth: 'fnvm-h0',
  nsVeth: 'fnvm-n0',
  hostAddress: '10.199.0.1',
  nsAddress: '10.199.0.2',
  subnet: '10.199.0.0/30',
} as const;

export const sandboxNetnsPath = `/run/netns/${sandbox.netns}`;

const ruleset = `
table inet fnvm
delete table inet fnvm
table inet fnvm {
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "${sandbox.hostVeth}" drop
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "${sandbox.hostVeth}" ip daddr 127.0.0.0/8 drop
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr ${sandbox.subnet} oifname != "${sandbox.hostVeth}" masquerade
  }
}
`;

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export interface LinkedNamespace {
  netns: string;
  hostVeth: string;
  nsVeth: string;
  hostAddress: string;
  nsAddress: string;
}

/** A network namespace joined to the host by a veth pair (/30), routing everything through the host. */
export async function createLinkedNamespace(link: LinkedNamespace): Promise<void> {
  if (!existsSync(`/run/netns/${link.netns}`)) await ip('netns', 'add', link.netns);
  await ip('link', 'add', link.hostVeth, 'type', 'veth', 'peer', 'name', link.nsVeth, 'netns', link.netns);
  await ip('addr', 'add', `${link.hostAddress}/30`, 'dev', link.hostVeth);
  await ip('link', 'set', link.hostVeth, 'up');
  const inNs = ['netns', 'exec', link.netns, 'ip'];
  await ip(...inNs, 'addr', 'add', `${link.nsAddress}/30`, 'dev', link.nsVeth);
  await ip(...inNs, 'link', 'set', link.nsVeth, 'up');
  await ip(...inNs, 'link', 'set', 'lo', 'up');
  await ip(...inNs, 'route', 'add', 'default', 'via', link.hostAddress);
}

/**
 * Creates the sandbox namespace, veth and firewall if missing (idempotent; shared by every fnvm process on
 * the host). Returns null when it cannot (not root, no nft): the caller then runs VMs without it and says so.
 */
export async function ensureSandboxNetwork(log: (message: string) => void): Promise<string | null> {
  if (process.getuid?.() !== 0) {
    log('network isolation unavailable (not root): outbound VMs can reach host services via 10.0.2.2');
    return null;
  }
  try {
    const links = (await run('ip', ['-o', 'link', 'show'])).toString();
    if (!links.includes(`${sandbox.hostVeth}@`)) await createLinkedNamespace(sandbox);
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
    await run('nft', ['-f', '-'], { input: Buffer.from(ruleset) });
    return sandboxNetnsPath;
  } catch (error) {
    log(`network isolation unavailable: ${(error as Error).message}`);
    return null;
  }
}

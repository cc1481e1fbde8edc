// Outbound networking without reach into the host. VMs with network 'outbound' run their QEMU (and so
// its user-mode network stack) inside a dedicated network namespace: "the host" as the guest sees it
// (10.0.2.2) is that namespace's empty loopback, not the host's. The namespace's only link is a veth to
// the host, which forwards and masquerades its traffic outward but drops anything addressed to the host
// itself, and lets through only traffic to public addresses (plus DNS and the operator's allow list).
// Every VM has its own user-mode network, so VMs cannot address each other at all.
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { run } from '../exec.js';
import { isIpv4 } from './cidr.js';

export const sandbox = {
  netns: 'fnvm-sandbox',
  hostVeth: 'fnvm-h0',
  nsVeth: 'fnvm-n0',
  hostAddress: '10.199.0.1',
  nsAddress: '10.199.0.2',
  subnet: '10.199.0.0/30',
} as const;

export const sandboxNetnsPath = `/run/netns/${sandbox.netns}`;
const resolvConfPath = '/etc/resolv.conf';

/**
 * Private, local and special-purpose IPv4 ranges: functions reach public addresses only. Cloud metadata
 * (169.254.169.254) is in 169.254/16. FNVM_EGRESS_ALLOW opens parts of these, except 127/8.
 */
export const deniedByDefault = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.0.0.0/24', '192.168.0.0/16', '198.18.0.0/15', '224.0.0.0/4', '240.0.0.0/4',
  '168.63.129.16/32', // Azure's WireServer: a public address that serves the VM's platform configuration
] as const;

export interface EgressPolicy {
  /** Operator CIDRs (validated, see cidr.ts) reachable despite the deny list. */
  allow: readonly string[];
  /** The resolvers QEMU's user network forwards guest DNS (10.0.2.3) to: port 53 only. */
  nameservers: readonly string[];
}

const elements = (items: readonly string[]) => (items.length ? `elements = { ${items.join(', ')} }` : '');

// Input: nothing from the sandbox is ever delivered to the host, whatever its address and on whichever
// interface; allow rules live only in forward, which local traffic never traverses, so they cannot reopen
// it. Forward: no IPv6 (QEMU runs with ipv6=off; this is the backstop), never loopback, then DNS, the
// operator's allow list, the deny list; what is left is public. The table is replaced whole, atomically.
export function egressRuleset(policy: EgressPolicy): string {
  return `
table inet fnvm
delete table inet fnvm
table inet fnvm {
  set denied { type ipv4_addr; flags interval; auto-merge; ${elements(deniedByDefault)} }
  set allowed { type ipv4_addr; flags interval; auto-merge; ${elements(policy.allow)} }
  set nameservers { type ipv4_addr; ${elements(policy.nameservers)} }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "${sandbox.hostVeth}" drop
  }
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "${sandbox.hostVeth}" jump egress
  }
  chain egress {
    meta nfproto ipv6 drop
    ip daddr 127.0.0.0/8 drop
    ip daddr @nameservers meta l4proto { tcp, udp } th dport 53 accept
    ip daddr @allowed accept
    ip daddr @denied drop
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr ${sandbox.subnet} oifname != "${sandbox.hostVeth}" masquerade
  }
}
`;
}

/**
 * IPv4 nameservers of a resolv.conf, in order. QEMU enters only the sandbox's network namespace (nsenter
 * --net), not a mount namespace, so its resolver is the host's /etc/resolv.conf (/etc/netns/... does not
 * apply), and it forwards guest DNS to the first IPv4 nameserver there.
 */
export function nameserversOf(resolvConf: string): string[] {
  return [...resolvConf.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] ?? '').filter(isIpv4);
}

function hostNameservers(log: (message: string) => void): string[] {
  const all = nameserversOf(existsSync(resolvConfPath) ? readFileSync(resolvConfPath, 'utf8') : '');
  // A loopback resolver (systemd-resolved's 127.0.0.53) is the sandbox's own, empty loopback to QEMU.
  if (!all[0] || all[0].startsWith('127.')) {
    log(`DNS: QEMU forwards functions' lookups to the first IPv4 nameserver in ${resolvConfPath} ` +
      `(${all[0] ?? 'none'}), unreachable from the sandbox: functions cannot resolve names until it lists ` +
      'upstream servers first (e.g. those of /run/systemd/resolve/resolv.conf)');
  }
  return all.filter((address) => !address.startsWith('127.'));
}

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
 * Creates the sandbox namespace and veth if missing and (re)applies the firewall with this server's egress
 * allow list (idempotent; one table shared by every fnvm process on the host, so the last one started sets
 * the allow list). Returns null when it cannot (not root, no nft): the caller then runs VMs without it.
 */
export async function ensureSandboxNetwork(
  log: (message: string) => void,
  egress: { allow: readonly string[] },
): Promise<string | null> {
  if (process.getuid?.() !== 0) {
    log('network isolation unavailable (not root): outbound VMs can reach host services via 10.0.2.2');
    return null;
  }
  try {
    const links = (await run('ip', ['-o', 'link', 'show'])).toString();
    if (!links.includes(`${sandbox.hostVeth}@`)) await createLinkedNamespace(sandbox);
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
    const ruleset = egressRuleset({ allow: egress.allow, nameservers: hostNameservers(log) });
    await run('nft', ['-f', '-'], { input: Buffer.from(ruleset) });
    return sandboxNetnsPath;
  } catch (error) {
    // Fail closed: as root the operator expects the sandbox, and without it guests reach the host's services.
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot set up the network sandbox for outbound VMs (set FNVM_NETWORK=none to run without outbound networking): ${reason}`);
  }
}

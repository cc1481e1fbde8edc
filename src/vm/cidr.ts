// IPv4 CIDRs as an operator writes them (FNVM_EGRESS_ALLOW). Strict, so a typo fails at startup instead of
// becoming an nft error or, worse, a rule that opens more than meant.
const octet = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const ipv4 = new RegExp(`^${octet}(\\.${octet}){3}$`);

export function isIpv4(text: string): boolean {
  return ipv4.test(text);
}

function toInt(address: string): number {
  return address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
}

/** `a.b.c.d/n` (a bare address means /32). Throws with the reason; host bits must be zero. */
export function parseCidr(text: string): string {
  const [address = '', prefix = '32', ...rest] = text.split('/');
  if (text.includes(':')) throw new Error(`"${text}": IPv6 is not supported (functions have no IPv6)`);
  if (!isIpv4(address) || rest.length > 0 || !/^(3[0-2]|[12]?\d)$/.test(prefix)) {
    throw new Error(`"${text}" is not an IPv4 CIDR like 192.168.1.0/24`);
  }
  const bits = Number(prefix);
  const hostBits = bits === 0 ? toInt(address) : toInt(address) % 2 ** (32 - bits);
  if (hostBits !== 0) throw new Error(`"${text}" has host bits set`);
  return `${address}/${bits}`;
}

/** A comma-separated list of CIDRs; empty or unset is none. */
export function parseCidrList(raw: string | undefined): string[] {
  return (raw ?? '').split(',').map((item) => item.trim()).filter(Boolean).map(parseCidr);
}

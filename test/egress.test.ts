// The egress policy as data: CIDR validation, FNVM_EGRESS_ALLOW, resolv.conf parsing, and a ruleset nft
// accepts (checked with `nft -c`, which changes nothing). isolation.test.ts proves it with real traffic.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configFromEnv } from '../src/config.js';
import { run } from '../src/exec.js';
import { parseCidrList } from '../src/vm/cidr.js';
import { egressRuleset, nameserversOf } from '../src/vm/sandbox-net.js';

test('CIDRs: bare addresses are /32; typos, host bits and IPv6 are refused with the value', () => {
  assert.deepEqual(parseCidrList(' 10.1.0.0/16, 192.168.5.7 ,,'), ['10.1.0.0/16', '192.168.5.7/32']);
  assert.deepEqual(parseCidrList(undefined), []);
  for (const bad of ['10.1.2.3/16', '10.0.0.0/33', '256.1.1.1', '10.0.0/8', 'lan', 'fd00::/8', '10.0.0.0/8/1']) {
    assert.throws(() => parseCidrList(bad), new RegExp(bad.replace(/[./]/g, '\\$&')), bad);
  }
});

test('FNVM_EGRESS_ALLOW is read into the config and a bad value stops startup with a clear error', () => {
  const saved = process.env.FNVM_EGRESS_ALLOW;
  try {
    process.env.FNVM_EGRESS_ALLOW = '10.5.0.0/16,172.16.1.1';
    assert.deepEqual(configFromEnv().egressAllow, ['10.5.0.0/16', '172.16.1.1/32']);
    process.env.FNVM_EGRESS_ALLOW = '10.5.0.0/16,10.5.0.1/8';
    assert.throws(() => configFromEnv(), /^Error: FNVM_EGRESS_ALLOW: "10\.5\.0\.1\/8" has host bits set/);
  } finally {
    if (saved === undefined) delete process.env.FNVM_EGRESS_ALLOW;
    else process.env.FNVM_EGRESS_ALLOW = saved;
  }
});

test('nameservers: IPv4 only, in order', () => {
  const conf = '# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n nameserver 169.254.169.253\nnameserver fd00::1\nsearch x\n';
  assert.deepEqual(nameserversOf(conf), ['127.0.0.53', '10.0.0.2', '169.254.169.253']);
});

test('the ruleset is valid nft, empty or full, overlapping allow entries included', async (t) => {
  if (process.getuid?.() !== 0) throw new Error('nft -c needs root');
  for (const policy of [
    { allow: [], nameservers: [] },
    { allow: ['10.0.0.0/8', '10.1.0.0/16', '0.0.0.0/0'], nameservers: ['10.255.255.53', '169.254.169.253'] },
  ]) {
    await t.test(JSON.stringify(policy), async () => {
      await run('nft', ['-c', '-f', '-'], { input: Buffer.from(egressRuleset(policy)) });
    });
  }
  // Order is the policy: loopback before any allow; DNS and the allow list before the deny list.
  const chain = egressRuleset({ allow: [], nameservers: [] }).split('chain egress')[1] ?? '';
  const at = (needle: string) => chain.indexOf(needle);
  assert.ok(at('ipv6 drop') >= 0 && at('ipv6 drop') < at('127.0.0.0/8 drop'));
  assert.ok(at('127.0.0.0/8 drop') < at('@nameservers') && at('@nameservers') < at('@allowed'));
  assert.ok(at('@allowed') < at('@denied drop'));
});

// VMs restored from one snapshot must not share random state: three functions deployed from the same base
// snapshot, and two VMs of one function, draw different values from every source users reach for: the kernel
// CRNG, OpenSSL (key generation, ECDH, WebCrypto, TLS handshakes; ssl.RAND_bytes in Python) and the runtimes'
// own generators.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm?.stop();
});

// A self-signed certificate for "localhost" (test only), so that a TLS handshake can run inside the VM, on its
// loopback; the client also checks the certificate's dates against the guest clock.
const testKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqhA5q3cdILb/mhBF
gAZg+QfX1SAMhuKZtG+4J/IDwQWhRANCAAQkFlxZfiAEydMsGaMpJ4ADZfOHygv9
JBXrgM5DdOufPVJLXbrtxrKjZSN5qPm0H/AvSjUmi1BObAa6mUTP6dKy
-----END PRIVATE KEY-----`;
const testCert = `-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUKy6/v96mSTEVWPwqMaWEQdXav5MwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwMTE5MjkyNloYDzIxMjYxMTA3
MTkyOTI2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQkFlxZfiAEydMsGaMpJ4ADZfOHygv9JBXrgM5DdOufPVJLXbrtxrKj
ZSN5qPm0H/AvSjUmi1BObAa6mUTP6dKyo2kwZzAdBgNVHQ4EFgQUlJBXmmRIQiY+
5UiEWrWYjoiWeNQwHwYDVR0jBBgwFoAUlJBXmmRIQiY+5UiEWrWYjoiWeNQwDwYD
VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2NhbGhvc3QwCgYIKoZIzj0EAwID
SAAwRQIhAI84Lj6sDT3N/z7ZNfQamnMRP0XyPid8tDYP8KZnjLoXAiBIJ8U1Qpqq
fShVd25Lqn+Qg6mJXYD68f8b4hgCKzphsA==
-----END CERTIFICATE-----`;

const sources = {
  node: `const crypto = require('node:crypto');
const fs = require('node:fs');
const tls = require('node:tls');
const key = ${JSON.stringify(testKey)}, cert = ${JSON.stringify(testCert)};
function tlsSecret() {
  return new Promise((resolve, reject) => {
    const server = tls.createServer({ key, cert }, (socket) => socket.end()).listen(0, '127.0.0.1', () => {
      const client = tls.connect({ port: server.address().port, host: '127.0.0.1', servername: 'localhost', ca: cert }, () => {
        resolve(client.exportKeyingMaterial(32, 'fnvm-clone-test').toString('hex'));
        client.end();
        server.close();
      });
      client.on('error', reject);
    });
  });
}
exports.handler = async (event) => {
  if (event.crash) process.exit(3);
  const urandom = Buffer.alloc(16);
  const fd = fs.openSync('/dev/urandom', 'r');
  fs.readSync(fd, urandom);
  fs.closeSync(fd);
  const hmac = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, true, ['sign']);
  return {
    urandom: urandom.toString('hex'),
    ed25519: crypto.generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    ecdh: crypto.createECDH('prime256v1').generateKeys('hex'),
    webcrypto_hmac: Buffer.from(await crypto.subtle.exportKey('raw', hmac)).toString('hex'),
    pool_bytes: await new Promise((resolve, reject) => crypto.randomBytes(16, (e, b) => (e ? reject(e) : resolve(b.toString('hex'))))),
    tls: await tlsSecret(),
    bytes: crypto.randomBytes(16).toString('hex'),
    uuid: crypto.randomUUID(),
    web_uuid: globalThis.crypto.randomUUID(),
    values: Array.from(globalThis.crypto.getRandomValues(new Uint8Array(8))),
    math: [Math.random(), Math.random()],
  };
};`,
  python: `import os, random, uuid, ssl, secrets
def handler(event):
    if event.get('crash'):
        os._exit(3)
    with open('/dev/urandom', 'rb') as device:
        urandom = device.read(16).hex()
    return {
        'urandom': urandom, 'getrandom': os.getrandom(16).hex(), 'os_urandom': os.urandom(16).hex(),
        'ssl': ssl.RAND_bytes(16).hex(), 'secrets': secrets.token_hex(16), 'uuid': str(uuid.uuid4()),
        'random': [random.random(), random.random()],
    }`,
} as const;

async function draw(name: string): Promise<Record<string, unknown>> {
  const result = await fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event: {} } });
  assert.equal(result.body.status, 'success', JSON.stringify(result.body.error));
  return result.body.response as Record<string, unknown>;
}

function assertAllDiffer(outputs: Array<Record<string, unknown>>, what: string): void {
  const keys = Object.keys(outputs[0]!);
  assert.ok(keys.length >= 7, 'every source was drawn');
  for (const key of keys) {
    const seen = new Set(outputs.map((output) => JSON.stringify(output[key])));
    assert.equal(seen.size, outputs.length, `${what}: ${key} must differ, got ${[...seen].join(' / ')}`);
  }
}

for (const runtime of ['node', 'python'] as const) {
  test(`${runtime}: three clones of one snapshot, and two VMs of one function, share no random stream`, async () => {
    const names = [1, 2, 3].map((n) => `${runtime}-clone-${n}`);
    for (const name of names) {
      const { body } = await fnvm.api('/v1/functions', { method: 'POST', body: { name, runtime, code: sources[runtime] } });
      assert.equal((await waitForState(fnvm, body.id)).state, 'ready');
    }
    const outputs = [];
    for (const name of names) outputs.push(await draw(name));
    assertAllDiffer(outputs, `${runtime} functions cloned from one snapshot`);

    // The first function's VM crashes and is replaced by another clone of the same snapshot.
    const crashed = await fnvm.api(`/v1/functions/${names[0]}/invoke`, { method: 'POST', body: { event: { crash: true } } });
    assert.equal(crashed.body.status, 'error');
    const replaced = await draw(names[0]!);
    assertAllDiffer([outputs[0]!, replaced], `two VMs of ${names[0]}`);
  });
}

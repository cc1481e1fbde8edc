// VMs restored from one snapshot must not share random state: two functions deployed from the same warm
// pool snapshot produce different random sequences in every runtime API users reach for.
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

const sources = {
  node: `const crypto = require('node:crypto');
exports.handler = () => ({
  uuid: crypto.randomUUID(), web_uuid: globalThis.crypto.randomUUID(), math: [Math.random(), Math.random()],
  bytes: crypto.randomBytes(16).toString('hex'), values: Array.from(globalThis.crypto.getRandomValues(new Uint8Array(8))),
});`,
  python: `import os, random, uuid
def handler(event):
    return {'uuid': str(uuid.uuid4()), 'random': [random.random(), random.random()], 'urandom': os.urandom(16).hex()}`,
} as const;

for (const runtime of ['node', 'python'] as const) {
  test(`two ${runtime} functions from one snapshot draw different random numbers`, async () => {
    const outputs = [];
    for (const name of [`${runtime}-twin-1`, `${runtime}-twin-2`]) {
      const { body } = await fnvm.api('/v1/functions', { method: 'POST', body: { name, runtime, code: sources[runtime] } });
      assert.equal((await waitForState(fnvm, body.id)).state, 'ready');
      const result = await fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event: {} } });
      assert.equal(result.body.status, 'success', JSON.stringify(result.body.error));
      outputs.push(result.body.response as Record<string, unknown>);
    }
    const [a, b] = outputs as [Record<string, unknown>, Record<string, unknown>];
    for (const key of Object.keys(a)) assert.notDeepEqual(a[key], b[key], `${runtime} ${key} differs between clones`);
  });
}

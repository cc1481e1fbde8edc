// Deployment packages through the API, on real VMs: a Node package with a real npm dependency tree and files of
// its own, an ESM package, a Python package with vendored modules; read-only /var/task; the zip comes back as
// sent; refusals store nothing; packages are stored once and removed with their last function; a package that
// does not load is an error (on create) or a 400 that keeps the old version (on update); a new package swaps in
// under load with no failed invocation; packaged functions survive a restart and wake from their snapshot.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { liveProcessCount } from '../src/vm/processes.js';
import { deployReady, startTestServer, waitForState, type TestServer } from './support/server.js';
import { nodeModulesTree, patchBytes, zipOf, type Files } from './support/zips.js';

const repoRoot = join(import.meta.dirname, '..', '..');
const b64 = (zip: Buffer) => zip.toString('base64');

/** index.js zips the event's text with yazl, reads the zip back with yauzl, and reads a data file of its own. */
const nodePackage: Files = {
  'index.js': `const fs = require('fs');
const yazl = require('yazl');
const yauzl = require('yauzl');
const { describe } = require('./lib/describe');
exports.handler = async (event) => {
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from(event.text), 'hello.txt');
  zip.end();
  const chunks = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk);
  const entries = await new Promise((resolve, reject) => yauzl.fromBuffer(Buffer.concat(chunks), (error, read) => {
    if (error) return reject(error);
    const seen = [];
    read.on('entry', (entry) => seen.push(entry.fileName + ':' + entry.crc32));
    read.on('end', () => resolve(seen));
  }));
  let write = 'allowed';
  try { fs.writeFileSync('/var/task/written.txt', 'x'); } catch (error) { write = error.code; }
  return describe(entries, fs.readFileSync('data/greeting.txt', 'utf8').trim(), { cwd: process.cwd(), dir: __dirname, write });
};
`,
  'lib/describe.js': 'exports.describe = (entries, greeting, where) => ({ entries, greeting, ...where });\n',
  'data/greeting.txt': 'hello from a file of the package\n',
  'package.json': JSON.stringify({ name: 'zipper', version: '1.0.0', dependencies: { yazl: '*', yauzl: '*' } }),
  ...nodeModulesTree(repoRoot, ['yazl', 'yauzl']),
};

const esmPackage: Files = {
  'package.json': JSON.stringify({ name: 'esm', type: 'module' }),
  'src/app.js': `import { shout } from './lib/shout.js';\nexport const handler = async (event) => ({ shouted: shout(event.word), url: import.meta.url });\n`,
  'src/lib/shout.js': `export const shout = (word) => word.toUpperCase() + '!';\n`,
};

const pythonPackage: Files = {
  'lambda_function.py': `import os
import vendored_mod
from pkg.sub import mod as submod
import pkg.nsub.leaf

def lambda_handler(event, context):
    try:
        open('/var/task/written.txt', 'w')
        write = 'allowed'
    except OSError as error:
        write = error.strerror
    return {'vendored': vendored_mod.VALUE, 'twice': submod.twice(event['n']), 'leaf': pkg.nsub.leaf.NAME,
            'file': vendored_mod.__file__, 'cwd': os.getcwd(), 'write': write}
`,
  'vendored_mod.py': 'VALUE = "vendored"\n',
  'pkg/__init__.py': '',
  'pkg/sub/__init__.py': '',
  'pkg/sub/mod.py': 'def twice(n):\n    return n * 2\n',
  'pkg/nsub/leaf.py': 'NAME = "namespace leaf"\n',
};

after(() => {
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the servers');
});

async function invoke(fnvm: TestServer, name: string, event: unknown = {}): Promise<any> {
  const { status, body } = await fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event } });
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.status, 'success', JSON.stringify(body.error));
  return body.response;
}

const storedPackages = (fnvm: TestServer) => {
  const dir = join(fnvm.dataDir, 'packages');
  return existsSync(dir) ? readdirSync(dir).filter((name) => /^[0-9a-f]{64}$/.test(name)).sort() : [];
};

describe('deployment packages', () => {
  let fnvm: TestServer;

  before(async () => {
    fnvm = await startTestServer({ idleSeconds: 300 });
  });

  after(async () => {
    await fnvm?.stop();
  });

  test('a Node package with a real npm dependency tree and files of its own runs from a read-only /var/task', async () => {
    const zip = await zipOf(nodePackage);
    const item = await deployReady(fnvm, { name: 'zipper', runtime: 'node', handler: 'index.handler', package: b64(zip) });
    assert.equal(item.code, undefined, 'a packaged function has no code in its item');
    const files = Object.keys(nodePackage).length;
    assert.deepEqual(item.package, {
      sha256: createHash('sha256').update(zip).digest('hex'),
      size: zip.length,
      unpacked_size: Object.values(nodePackage).reduce((sum, content) => sum + Buffer.byteLength(content), 0),
      files,
    });
    const text = `text ${randomBytes(8).toString('hex')}`;
    const response = await invoke(fnvm, 'zipper', { text });
    assert.deepEqual(response, {
      entries: [`hello.txt:${crc32(text)}`],
      greeting: 'hello from a file of the package',
      cwd: '/var/task',
      dir: '/var/task',
      write: 'EROFS',
    });

    // The zip comes back byte for byte; the file tree and a file's content are there for the console.
    const fetched = await fetch(`${fnvm.url}/v1/functions/zipper/package`);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.headers.get('content-type'), 'application/zip');
    assert.ok(Buffer.from(await fetched.arrayBuffer()).equals(zip), 'GET package returns the zip as uploaded');
    const tree = (await fnvm.api('/v1/functions/zipper/package/files')).body.files;
    assert.equal(tree.length, files);
    assert.deepEqual(tree.find((f: { path: string }) => f.path === 'lib/describe.js'), { path: 'lib/describe.js', size: Buffer.byteLength(nodePackage['lib/describe.js'] ?? '') });
    const file = await fetch(`${fnvm.url}/v1/functions/zipper/package/files/data/greeting.txt`);
    assert.equal(await file.text(), nodePackage['data/greeting.txt']);
    assert.equal((await fetch(`${fnvm.url}/v1/functions/zipper/package/files/data/nothing.txt`)).status, 404);
  });

  test('an ESM package ("type": "module") with its handler in a subdirectory', async () => {
    await deployReady(fnvm, { name: 'esm', runtime: 'node', handler: 'src/app.handler', package: b64(await zipOf(esmPackage)) });
    assert.deepEqual(await invoke(fnvm, 'esm', { word: 'hey' }), { shouted: 'HEY!', url: 'file:///var/task/src/app.js' });
  });

  test('a Python package imports its vendored module, a subpackage and a namespace package from the package root', async () => {
    const item = await deployReady(fnvm, { name: 'py-pkg', runtime: 'python', package: b64(await zipOf(pythonPackage)) });
    assert.equal(item.handler, 'lambda_function.lambda_handler', 'Lambda\'s default Python handler');
    assert.deepEqual(await invoke(fnvm, 'py-pkg', { n: 21 }), {
      vendored: 'vendored', twice: 42, leaf: 'namespace leaf', file: '/var/task/vendored_mod.py', cwd: '/var/task', write: 'Read-only file system',
    });
  });

  test('refusals: 400 with the reason, and nothing stored', async () => {
    const before = { functions: (await fnvm.api('/v1/functions')).body.items.length, packages: storedPackages(fnvm) };
    const good = await zipOf({ 'index.js': 'exports.handler = () => 1;', 'xx/evil.js': 'x' });
    const cases: Array<[string, string | Buffer, RegExp]> = [
      ['not base64', 'not base64!', /base64/],
      ['not a zip', randomBytes(4096), /zip/i],
      ['a path that escapes', patchBytes(good, 'xx/evil.js', '../evil.j'.padEnd(10, 's')), /\.\./],
      ['a symlink', await zipOf({ 'index.js': 'exports.handler = () => 1;', 'link': '/etc/passwd' }, { link: 0o120777 }), /symlink|link/i],
      ['a duplicate entry', patchBytes(await zipOf({ 'index.js': 'a', 'indey.js': 'b' }), 'indey.js', 'index.js'), /duplicate|twice/i],
      ['a zip bomb', await zipOf({ 'index.js': 'exports.handler = () => 1;', 'zeros.bin': Buffer.alloc(260 * 2 ** 20) }), /250|unzipped|large/i],
    ];
    for (const [what, payload, message] of cases) {
      const body = { name: `refused-${what.replaceAll(' ', '-')}`, runtime: 'node', package: typeof payload === 'string' ? payload : b64(payload) };
      const response = await fnvm.api('/v1/functions', { method: 'POST', body });
      assert.equal(response.status, 400, `${what}: ${JSON.stringify(response.body)}`);
      assert.match(response.body.error, message, what);
    }
    const both = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'both', runtime: 'node', code: 'x', package: b64(good) } });
    assert.equal(both.status, 400);
    assert.match(both.body.error, /either code or package/);
    const badHandler = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'bad-handler', runtime: 'node', handler: '../up.handler', package: b64(good) } });
    assert.equal(badHandler.status, 400);
    assert.deepEqual({ functions: (await fnvm.api('/v1/functions')).body.items.length, packages: storedPackages(fnvm) }, before);
  });

  test('a package is stored once for all functions that use it and removed with the last one', async () => {
    const zip = await zipOf({ 'src/app.js': `exports.handler = () => 'shared';` });
    const before = storedPackages(fnvm);
    const a = await deployReady(fnvm, { name: 'shared-a', runtime: 'node', handler: 'src/app.handler', package: b64(zip) });
    await deployReady(fnvm, { name: 'shared-b', runtime: 'node', handler: 'src/app.handler', package: b64(zip) });
    const sha = a.package.sha256;
    assert.deepEqual(storedPackages(fnvm), [...before, sha].sort());
    assert.equal((await fnvm.api('/v1/functions/shared-a', { method: 'DELETE' })).status, 200);
    assert.ok(storedPackages(fnvm).includes(sha), 'still used by shared-b');
    assert.equal(await invoke(fnvm, 'shared-b'), 'shared');
    // shared-b moves to single-file code: the package has no user left.
    const moved = await fnvm.api('/v1/functions/shared-b', { method: 'PUT', body: { code: `exports.handler = () => 'code';` } });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    assert.equal(moved.body.item.package, undefined);
    assert.equal(moved.body.item.handler, 'handler', 'src/app.handler means nothing to single-file code: the default');
    assert.equal(await invoke(fnvm, 'shared-b'), 'code');
    assert.deepEqual(storedPackages(fnvm), before);
    assert.equal((await fnvm.api('/v1/functions/shared-b/package')).status, 404);
    await fnvm.api('/v1/functions/shared-b', { method: 'DELETE' });
  });

  test('a package that does not load: error with the runtime\'s message on create, 400 and the old version serving on update', async () => {
    const onlyIndex = b64(await zipOf({ 'index.js': 'exports.handler = () => 1;' }));
    const missingFile = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'no-file', runtime: 'node', handler: 'src/missing.handler', package: onlyIndex } });
    const failed = await waitForState(fnvm, missingFile.body.id);
    assert.equal(failed.state, 'error');
    assert.match(failed.error, /src\/missing/);
    const noHandler = b64(await zipOf({ 'app.py': 'def other(e, c):\n    return 1\n' }));
    const noExport = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'no-export', runtime: 'python', handler: 'app.handler', package: noHandler } });
    const failedPy = await waitForState(fnvm, noExport.body.id);
    assert.equal(failedPy.state, 'error');
    assert.match(failedPy.error, /handler/);

    await deployReady(fnvm, { name: 'keeps-old', runtime: 'node', package: b64(await zipOf({ 'index.js': `exports.handler = () => 'old';` })) });
    const update = await fnvm.api('/v1/functions/keeps-old', { method: 'PUT', body: { package: b64(await zipOf({ 'index.js': 'exports.nothing = 1;' })) } });
    assert.equal(update.status, 400, JSON.stringify(update.body));
    assert.match(update.body.error, /handler/);
    assert.equal(await invoke(fnvm, 'keeps-old'), 'old');
    assert.equal((await fnvm.api('/v1/functions/keeps-old')).body.item.version, 1);
  });

  test('a new package swaps in under invoke load with no failed invocation', async () => {
    const version = (v: number) => zipOf({ 'index.js': `exports.handler = async () => { await new Promise((r) => setTimeout(r, 5)); return ${v}; };` });
    await deployReady(fnvm, { name: 'swap', runtime: 'node', package: b64(await version(1)) });
    let updated = false;
    const seen: number[] = [];
    const failures: string[] = [];
    const client = async () => {
      for (let i = 0; i < 400 && !(updated && seen.at(-1) === 2 && i > 20); i++) {
        const { status, body } = await fnvm.api('/v1/functions/swap/invoke', { method: 'POST', body: { event: {} } });
        if (status !== 200 || body.status !== 'success') failures.push(`${status} ${JSON.stringify(body)}`);
        else seen.push(body.response);
      }
    };
    const clients = Promise.all([client(), client(), client(), client()]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const put = await fnvm.api('/v1/functions/swap', { method: 'PUT', body: { package: b64(await version(2)) } });
    updated = true;
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const after = await invoke(fnvm, 'swap');
    await clients;
    assert.deepEqual(failures, []);
    assert.equal(after, 2, 'once the PUT answered, the new package serves');
    assert.ok(seen.includes(1) && seen.includes(2), 'invocations ran on both packages');
  });
});

describe('packaged functions across a restart and a wake', () => {
  test('a packaged function serves after a restart, and a slow-to-initialise one wakes from its snapshot without re-running its init', async () => {
    let fnvm = await startTestServer({ idleSeconds: 1 });
    const dataDir = fnvm.dataDir;
    try {
      const slow = `const initAt = Date.now(); const until = Date.now() + 2500; while (Date.now() < until);
exports.handler = () => ({ initAt, data: require('fs').readFileSync('/var/task/data.txt', 'utf8') });`;
      const item = await deployReady(fnvm, { name: 'slow-pkg', runtime: 'node', package: b64(await zipOf({ 'index.js': slow, 'data.txt': 'packaged data' })) });
      assert.ok(item.snapshot_bytes > 0, 'a snapshot was kept');
      const first = await invoke(fnvm, 'slow-pkg');
      for (let wake = 0; wake < 2; wake++) {
        const deadline = Date.now() + 30_000;
        while ((await fnvm.api('/v1/functions/slow-pkg')).body.item.vm_id !== null) {
          assert.ok(Date.now() < deadline, 'the function went to sleep');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const woken = await fnvm.api('/v1/functions/slow-pkg/invoke', { method: 'POST', body: { event: {} } });
        assert.equal(woken.body.cold_start, true);
        assert.deepEqual(woken.body.response, first, 'woken from the snapshot: same init, same package');
        if (wake === 0) {
          await fnvm.stop({ keepData: true });
          fnvm = await startTestServer({ dataDir, idleSeconds: 1 });
        }
      }
    } finally {
      await fnvm.stop();
    }
  });
});

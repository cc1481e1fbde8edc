// The task disk for real: ext4 images of packages built here (mkfs.ext4 -d), attached to warm pool VMs over
// QMP, mounted by both agents at /var/task, handlers loaded from the packages' files, and snapshots of a VM
// with a package restored with it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../src/exec.js';
import { GuestRequestError } from '../src/guest/channel.js';
import type { InvokeResult, LoadRequest, LoadResult } from '../src/guest/protocol.js';
import { TaskDiskError, type Vm } from '../src/vm/driver.js';
import { VmPool } from '../src/vm/pool.js';
import { liveProcessCount } from '../src/vm/processes.js';
import type { VmSpec } from '../src/vm/spec.js';
import { taskDiskBytes } from '../src/vm/task-disk.js';
import { processExists, testDriver, type TestDriver } from './support/vm-env.js';

const nodeSpec: VmSpec = { runtime: 'node', vcpu: 1, memoryMb: 256, network: 'none' };
const pythonSpec: VmSpec = { runtime: 'python', vcpu: 1, memoryMb: 256, network: 'none' };

let env: TestDriver;
let pool: VmPool;
let work: string;
const vms: Vm[] = [];
const pids: number[] = [];

function track(vm: Vm): Vm {
  vms.push(vm);
  if (vm.pid) pids.push(vm.pid);
  return vm;
}

/** A VM from the warm pool (waits for the pool's refill first, so it is one restored ahead of need). */
async function warmVm(spec: VmSpec): Promise<Vm> {
  await pool.settled();
  const { vm, source } = await pool.take(spec);
  assert.equal(source, 'warm');
  return track(vm);
}

let images = 0;
/** An ext4 image of `files` as the package builder makes them: mkfs.ext4 -d, then extended to taskDiskBytes. */
async function packageImage(files: Record<string, string>): Promise<string> {
  const root = join(work, `tree-${++images}`);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const image = join(work, `package-${images}.ext4`);
  await run('mkfs.ext4', ['-q', '-F', '-d', root, '-O', '^has_journal', image, '8M']);
  truncateSync(image, taskDiskBytes);
  return image;
}

function load(vm: Vm, request: Partial<LoadRequest> & { handler: string; version: number }): Promise<LoadResult> {
  return vm.channel.request('load', { code: '', env: {}, package: true, ...request }, 60_000);
}

async function invoke(vm: Vm, event: unknown = {}): Promise<unknown> {
  const result: InvokeResult = await vm.channel.request('invoke', { request_id: 'r', event, timeout_ms: 30_000 }, 30_000);
  assert.equal(result.status, 'success', JSON.stringify(result.error));
  return result.response;
}

async function loadFails(vm: Vm, request: Parameters<typeof load>[1], type: string, message: RegExp): Promise<void> {
  const error: unknown = await load(vm, request).then(() => null, (e: unknown) => e);
  assert.ok(error instanceof GuestRequestError, `expected a load error, got ${String(error)}`);
  assert.equal(error.info.type, type, error.info.message);
  assert.match(error.info.message, message);
}

before(async () => {
  env = await testDriver();
  work = mkdtempSync(join(env.runRoot, 'task-'));
  pool = new VmPool(env.driver, { snapshotDir: join(env.runRoot, 'pool'), warm: [{ spec: nodeSpec, size: 1 }, { spec: pythonSpec, size: 1 }] });
  pool.start();
});

after(async () => {
  await pool.close();
  await Promise.all(vms.map((vm) => vm.stop()));
  env.cleanup();
  assert.equal(liveProcessCount(), 0, 'every QEMU process was reaped');
  for (const pid of pids) assert.equal(processExists(pid), false, `QEMU ${pid} is gone`);
});

const nodePackage = {
  'package.json': JSON.stringify({ name: 'app', version: '1.0.0' }),
  'index.js': `
    const fs = require('node:fs');
    const helper = require('./lib/helper');
    const dep = require('tiny-dep');
    const greeting = process.env.GREETING;
    console.log('index.js loaded, GREETING=' + greeting);
    exports.handler = async (event) => {
      let writeError = null;
      try { fs.writeFileSync('/var/task/new.txt', 'x'); } catch (error) { writeError = error.code; }
      return { double: helper.double(event.n), dep: dep.name(), data: fs.readFileSync('data.txt', 'utf8'),
        cwd: process.cwd(), writeError, greeting, file: __filename };
    };`,
  'lib/helper.js': 'exports.double = (n) => n * 2;',
  'node_modules/tiny-dep/package.json': JSON.stringify({ name: 'tiny-dep', main: 'main.js' }),
  'node_modules/tiny-dep/main.js': "exports.name = () => 'tiny-dep 1.0';",
  'data.txt': 'hello from data.txt\n',
  'esm/package.json': JSON.stringify({ type: 'module' }),
  'esm/app.js': `
    import { stamp } from './stamp.js';
    import helper from '../lib/helper.js';
    export const handler = async () => ({ kind: 'esm', stamp, double: helper.double(21), url: import.meta.url.split('?')[0] });`,
  'esm/stamp.js': 'export const stamp = process.env.GREETING;',
  'handlers/m.mjs': "export async function handler(event) { return { kind: 'mjs', event }; }",
  'handlers/c.cjs': "module.exports.handler = async () => ({ kind: 'cjs', require: typeof require });",
  'broken.js': "require('not-installed'); exports.handler = () => 1;",
};

const indexResult = (greeting: string) => ({
  double: 42, dep: 'tiny-dep 1.0', data: 'hello from data.txt\n', cwd: '/var/task', writeError: 'EROFS', greeting, file: '/var/task/index.js',
});

describe('node packages', () => {
  let vm: Vm;
  let image: string;

  before(async () => {
    image = await packageImage(nodePackage);
    vm = await warmVm(nodeSpec);
  });

  test('a warm pool VM takes a package: require of a file and of node_modules, fs, cwd, a read-only /var/task', async (t) => {
    const attachStarted = performance.now();
    await vm.attachTask(image);
    const attachMs = performance.now() - attachStarted;
    const loadStarted = performance.now();
    const loaded = await load(vm, { handler: 'index.handler', version: 1, env: { GREETING: 'one' } });
    const loadMs = performance.now() - loadStarted;
    t.diagnostic(`node: attachTask ${attachMs.toFixed(1)} ms; first load (mount + import) ${loadMs.toFixed(1)} ms round trip, ${loaded.duration_ms.toFixed(1)} ms in the guest`);
    assert.deepEqual(loaded.logs, ['index.js loaded, GREETING=one'], 'logs of the module load are captured');
    assert.deepEqual(await invoke(vm, { n: 21 }), indexResult('one'));
  });

  test('a second load evaluates the package afresh (CommonJS and ES modules, dependencies included)', async () => {
    const loaded = await load(vm, { handler: 'index.handler', version: 2, env: { GREETING: 'two' } });
    assert.deepEqual(loaded.logs, ['index.js loaded, GREETING=two']);
    assert.deepEqual(await invoke(vm, { n: 21 }), indexResult('two'));
    await load(vm, { handler: 'esm/app.handler', version: 3, env: { GREETING: 'three' } });
    assert.deepEqual(await invoke(vm), { kind: 'esm', stamp: 'three', double: 42, url: 'file:///var/task/esm/app.js' });
    await load(vm, { handler: 'esm/app.handler', version: 4, env: { GREETING: 'four' } });
    assert.deepEqual(await invoke(vm), { kind: 'esm', stamp: 'four', double: 42, url: 'file:///var/task/esm/app.js' }, 'the imported stamp.js ran again');
  });

  test('.mjs and .cjs handlers', async () => {
    await load(vm, { handler: 'handlers/m.handler', version: 5 });
    assert.deepEqual(await invoke(vm, { x: 1 }), { kind: 'mjs', event: { x: 1 } });
    await load(vm, { handler: 'handlers/c.handler', version: 6 });
    assert.deepEqual(await invoke(vm), { kind: 'cjs', require: 'function' });
  });

  test("a missing file, a missing export and a missing dependency give the runtime's errors; the code before stays", async () => {
    await loadFails(vm, { handler: 'lib/nope.handler', version: 7 }, 'ImportModuleError', /^Cannot find module 'lib\/nope' in \/var\/task/);
    await loadFails(vm, { handler: 'index.nothing', version: 7 }, 'HandlerNotFound', /index\.js exports no function "nothing"/);
    await loadFails(vm, { handler: 'broken.handler', version: 7 }, 'ImportModuleError', /not-installed/);
    await loadFails(vm, { handler: '../etc/passwd.handler', version: 7 }, 'HandlerNotFound', /inside \/var\/task/);
    assert.deepEqual(await invoke(vm), { kind: 'cjs', require: 'function' });
  });

  test('a second package for the same VM is refused', async () => {
    const other = await packageImage({ 'index.js': 'exports.handler = () => 2;' });
    await assert.rejects(vm.attachTask(other), (error: unknown) => error instanceof TaskDiskError && /one package in its life/.test(error.message));
  });

  test('a snapshot of the VM restores twice with the package attached: no new attach', async () => {
    await load(vm, { handler: 'index.handler', version: 8, env: { GREETING: 'snap' } });
    const snapshot = await vm.snapshot(join(work, 'node-package.vmstate'));
    assert.equal(snapshot.taskImage, image);
    await vm.stop();
    for (const round of [1, 2]) {
      const restored = track(await env.driver.restore(snapshot));
      assert.equal((await restored.channel.request('ping', {})).loaded_version, 8, `restore ${round} holds the loaded package`);
      assert.deepEqual(await invoke(restored, { n: 21 }), indexResult('snap'));
      // The snapshot dropped the guest's caches: a new load reads the files from the image again.
      await load(restored, { handler: 'index.handler', version: 9, env: { GREETING: `round ${round}` } });
      assert.deepEqual(await invoke(restored, { n: 21 }), indexResult(`round ${round}`));
      await assert.rejects(restored.attachTask(image), TaskDiskError);
      await restored.stop();
    }
  });
});

describe('a VM with the placeholder', () => {
  let vm: Vm;
  before(async () => {
    vm = await warmVm(nodeSpec);
  });

  test('serves single-file code; the task disk is /dev/vdb, the size of every task image', async () => {
    const code = `const fs = require('node:fs');
      const read = (file) => { try { return fs.readFileSync(file, 'utf8').trim(); } catch { return null; } };
      exports.handler = async () => ({ vdb: read('/sys/block/vdb/serial'), vdbSectors: Number(read('/sys/block/vdb/size')),
        vdbReadOnly: read('/sys/block/vdb/ro'), vdaSerial: read('/sys/block/vda/serial') });`;
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 1 });
    assert.deepEqual(await invoke(vm), { vdb: 'fnvm-task', vdbSectors: taskDiskBytes / 512, vdbReadOnly: '1', vdaSerial: '' });
  });

  test('a package load without a package attached fails with PackageMountError; the VM keeps its code', async () => {
    await loadFails(vm, { handler: 'index.handler', version: 2 }, 'PackageMountError', /cannot mount the package at \/var\/task/);
    assert.equal((await vm.channel.request('ping', {})).loaded_version, 1);
  });

  test('an image of the wrong size is refused and changes nothing; a right one then mounts', async () => {
    const small = join(work, 'small.img');
    writeFileSync(small, Buffer.alloc(4096));
    await assert.rejects(vm.attachTask(small), (error: unknown) => error instanceof TaskDiskError && /exactly 536870912/.test(error.message));
    await vm.attachTask(await packageImage(nodePackage));
    await load(vm, { handler: 'index.handler', version: 3, env: { GREETING: 'late' } });
    assert.deepEqual(await invoke(vm, { n: 21 }), indexResult('late'));
  });
});

describe('python packages', () => {
  let vm: Vm;
  let image: string;
  before(async () => {
    image = await packageImage({
      'lambda_function.py': `
import errno, os
import vendored_dep
from pkg.sub import mod
from nspkg.sub import mod as nsmod
GREETING = os.environ.get('GREETING')
print('lambda_function loaded', GREETING)

def lambda_handler(event, context):
    try:
        open('/var/task/new.txt', 'w')
        write_error = None
    except OSError as exc:
        write_error = errno.errorcode[exc.errno]
    with open('data.txt') as data:
        text = data.read()
    return {'vendored': vendored_dep.VERSION, 'sub': mod.value(), 'ns': nsmod.value(), 'data': text,
            'cwd': os.getcwd(), 'write_error': write_error, 'greeting': GREETING, 'file': __file__}
`,
      'vendored_dep/__init__.py': "VERSION = 'vendored 2.0'\n",
      'pkg/__init__.py': '',
      'pkg/sub/__init__.py': '',
      'pkg/sub/mod.py': "def value():\n    return 'pkg.sub.mod'\n",
      'nspkg/sub/mod.py': "def value():\n    return 'nspkg.sub.mod (no __init__.py)'\n",
      'app/handlers.py': "def handle(event):\n    return {'app': event}\n",
      'broken.py': 'import not_installed\n',
      'data.txt': 'python data\n',
    });
    vm = await warmVm(pythonSpec);
  });

  const result = (greeting: string) => ({
    vendored: 'vendored 2.0', sub: 'pkg.sub.mod', ns: 'nspkg.sub.mod (no __init__.py)', data: 'python data\n',
    cwd: '/var/task', write_error: 'EROFS', greeting, file: '/var/task/lambda_function.py',
  });

  test('lambda_function.lambda_handler imports a vendored module and subpackages (with and without __init__.py)', async (t) => {
    const attachStarted = performance.now();
    await vm.attachTask(image);
    const attachMs = performance.now() - attachStarted;
    const loadStarted = performance.now();
    const loaded = await load(vm, { handler: 'lambda_function.lambda_handler', version: 1, env: { GREETING: 'one' } });
    t.diagnostic(`python: attachTask ${attachMs.toFixed(1)} ms; first load (mount + import) ${(performance.now() - loadStarted).toFixed(1)} ms round trip, ${loaded.duration_ms.toFixed(1)} ms in the guest`);
    assert.deepEqual(loaded.logs, ['lambda_function loaded one']);
    assert.deepEqual(await invoke(vm), result('one'));
  });

  test('a second load imports the package afresh', async () => {
    const loaded = await load(vm, { handler: 'lambda_function.lambda_handler', version: 2, env: { GREETING: 'two' } });
    assert.deepEqual(loaded.logs, ['lambda_function loaded two']);
    assert.deepEqual(await invoke(vm), result('two'));
  });

  test('handlers as path/to/file.name and path.to.file.name', async () => {
    await load(vm, { handler: 'app/handlers.handle', version: 3 });
    assert.deepEqual(await invoke(vm, 'slash'), { app: 'slash' });
    await load(vm, { handler: 'app.handlers.handle', version: 4 });
    assert.deepEqual(await invoke(vm, 'dot'), { app: 'dot' });
  });

  test("a missing file, a missing attribute and a missing dependency give the runtime's errors", async () => {
    await loadFails(vm, { handler: 'nope.handler', version: 5 }, 'ImportModuleError', /^Unable to import module 'nope' from \/var\/task: No module named 'nope'/);
    await loadFails(vm, { handler: 'lambda_function.nothing', version: 5 }, 'HandlerNotFound', /'nothing' is not defined in module 'lambda_function'/);
    await loadFails(vm, { handler: 'broken.handler', version: 5 }, 'ImportModuleError', /No module named 'not_installed'/);
    assert.deepEqual(await invoke(vm, 'still'), { app: 'still' }, 'the code loaded before still serves');
  });
});

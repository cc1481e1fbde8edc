// `fnvm deploy DIR` end to end: a directory zipped into a deployment package (index.js, lib/util.js, a
// dependency in node_modules, files left out by .fnvmignore), deployed to a real server and invoked.
// Needs a server that takes `package` (the package store wired into src/app.ts and the task disk in the guest).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { zipDirectory } from '../src/cli/zip.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { runCli, type CliRun } from './support/run-cli.js';
import { startTestServer, type TestServer } from './support/server.js';

const work = mkdtempSync(join(tmpdir(), 'fnvm-cli-package-'));
let fnvm: TestServer;
const cli = (args: string[]): Promise<CliRun> => runCli(args, { FNVM_URL: fnvm.url }, { cwd: work });
const ok = (run: CliRun, what: string) => assert.equal(run.code, 0, `${what}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);

function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

before(async () => {
  fnvm = await startTestServer();
  writeTree(join(work, 'app'), {
    'package.json': '{"name": "app", "dependencies": {"some-dep": "1.0.0"}}\n',
    'index.js': [
      'const { shout } = require("./lib/util");',
      'const dep = require("some-dep");',
      'const fs = require("node:fs");',
      'exports.handler = async (event) => {',
      '  console.log("app got", event.word);',
      '  return { shouted: shout(event.word), dep: dep.name, secretShipped: fs.existsSync(__dirname + "/secret.env") };',
      '};',
    ].join('\n') + '\n',
    'lib/util.js': 'exports.shout = (word) => String(word).toUpperCase() + "!";\n',
    'node_modules/some-dep/package.json': '{"name": "some-dep", "version": "1.0.0", "main": "main.js"}\n',
    'node_modules/some-dep/main.js': 'exports.name = "some-dep 1.0.0";\n',
    'secret.env': 'TOKEN=do-not-ship\n',
    '.fnvmignore': 'secret.env\n',
    '.git/HEAD': 'ref: refs/heads/main\n',
  });
  writeTree(join(work, 'pyapp'), {
    'requirements.txt': '\n',
    'lambda_function.py': 'from helpers.text import double\n\ndef lambda_handler(event, context=None):\n    return {"doubled": double(event["n"])}\n',
    'helpers/__init__.py': '',
    'helpers/text.py': 'def double(n):\n    return n * 2\n',
  });
});

after(async () => {
  await fnvm.stop();
  rmSync(work, { recursive: true, force: true });
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
});

test('deploy a node directory as a package and invoke it', async () => {
  const local = await zipDirectory(join(work, 'app'));
  assert.deepEqual(local.files, ['index.js', 'lib/util.js', 'node_modules/some-dep/main.js', 'node_modules/some-dep/package.json', 'package.json']);

  const deployed = await cli(['deploy', 'app', '--json']);
  ok(deployed, 'deploy');
  const item = JSON.parse(deployed.stdout);
  assert.equal(item.name, 'app');
  assert.equal(item.runtime, 'node');
  assert.equal(item.handler, 'index.handler');
  assert.equal(item.state, 'ready');
  assert.equal(item.code, undefined);
  assert.equal(item.package.sha256, local.sha256, 'the server stored exactly the zip the CLI made');
  assert.equal(item.package.size, local.zip.length);
  assert.equal(item.package.files, 5);
  assert.match(deployed.stderr, /^packaged 5 files: .* sha256 [0-9a-f]{64}$/m);
  assert.match(deployed.stderr, /^uploaded /m);

  const invoked = await cli(['invoke', 'app', '--event', '{"word": "hey"}']);
  ok(invoked, 'invoke');
  assert.deepEqual(JSON.parse(invoked.stdout), { shouted: 'HEY!', dep: 'some-dep 1.0.0', secretShipped: false });
  assert.match(invoked.stderr, /app got hey/);

  // The same tree again: the same zip, so nothing to change.
  const again = await cli(['deploy', 'app', '--json']);
  ok(again, 'deploy again');
  assert.equal(JSON.parse(again.stdout).version, item.version);

  writeFileSync(join(work, 'app/lib/util.js'), 'exports.shout = (word) => String(word).toUpperCase() + "!!!";\n');
  const changed = await cli(['deploy', 'app', '--json']);
  ok(changed, 'deploy changed');
  assert.equal(JSON.parse(changed.stdout).version, item.version + 1);
  assert.equal(JSON.parse((await cli(['invoke', 'app', '--event', '{"word": "hey"}'])).stdout).shouted, 'HEY!!!');
});

test('deploy a python directory (lambda_function.lambda_handler by default) and invoke it', async () => {
  const deployed = await cli(['deploy', 'pyapp', '--json']);
  ok(deployed, 'deploy');
  const item = JSON.parse(deployed.stdout);
  assert.equal(item.runtime, 'python');
  assert.equal(item.handler, 'lambda_function.lambda_handler');
  const invoked = await cli(['invoke', 'pyapp', '--event', '{"n": 21}']);
  ok(invoked, 'invoke');
  assert.deepEqual(JSON.parse(invoked.stdout), { doubled: 42 });
});

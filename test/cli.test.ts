// The `fnvm` command line end to end: the built CLI in its own process against a real server with real microVMs
// (and a bearer token), plus the zipping of directories unzipped again with yauzl.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import yauzl from 'yauzl';
import { packageFiles, zipDirectory } from '../src/cli/zip.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { freePort } from './support/cli.js';
import { runCli, type CliRun } from './support/run-cli.js';
import { startTestServer, type TestServer } from './support/server.js';
import { eventually } from './support/eventually.js';

function writeTree(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

/** Every entry of a zip: name, unix mode and content. */
async function unzip(zip: Buffer): Promise<Array<{ name: string; mode: number; content: Buffer }>> {
  const file = await new Promise<yauzl.ZipFile>((resolve, reject) => yauzl.fromBuffer(zip, { lazyEntries: true }, (error, opened) => (error ? reject(error) : resolve(opened))));
  const entries: Array<{ name: string; mode: number; content: Buffer }> = [];
  await new Promise<void>((resolve, reject) => {
    file.on('error', reject);
    file.on('end', resolve);
    file.on('entry', (entry: yauzl.Entry) => {
      file.openReadStream(entry, (error, stream) => {
        if (error) return reject(error);
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('error', reject);
        stream.on('end', () => {
          entries.push({ name: entry.fileName, mode: (entry.externalFileAttributes >>> 16) & 0o177777, content: Buffer.concat(chunks) });
          file.readEntry();
        });
      });
    });
    file.readEntry();
  });
  return entries;
}

const work = mkdtempSync(join(tmpdir(), 'fnvm-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('zipping a directory for deploy', () => {
  const tree = {
    'index.js': 'exports.handler = async () => require("./lib/util").answer;\n',
    'lib/util.js': 'exports.answer = 42;\n',
    'node_modules/some-dep/index.js': 'module.exports = "dep";\n',
    'node_modules/some-dep/package.json': '{"name":"some-dep","main":"index.js"}\n',
    'bin/run.sh': '#!/bin/sh\necho hi\n',
    'a.txt': 'sorted before a/ in byte order\n',
    'a/b.txt': 'b\n',
    'debug.log': 'left out by *.log\n',
    'keep.log': 'kept by !keep.log\n',
    'build/out.js': 'left out by build/\n',
    'lib/build/x.js': 'left out too: build/ matches at any depth\n',
    'docs/notes.md': 'left out by /docs\n',
    '.git/HEAD': 'ref: refs/heads/main\n',
    '.git/config': '[core]\n',
    '.fnvmignore': '# comments and blank lines are gitignore syntax\n\n*.log\n!keep.log\nbuild/\n/docs\n',
  };
  const expected = ['a.txt', 'a/b.txt', 'bin/run.sh', 'index.js', 'keep.log', 'lib/util.js', 'node_modules/some-dep/index.js', 'node_modules/some-dep/package.json'];

  test('.fnvmignore, .git and .fnvmignore itself are left out; names, bytes and modes are kept', async () => {
    const dir = join(work, 'zip-a');
    writeTree(dir, tree);
    chmodSync(join(dir, 'bin/run.sh'), 0o755);
    assert.deepEqual(packageFiles(dir), expected);
    const { zip, sha256, files } = await zipDirectory(dir);
    assert.deepEqual(files, expected);
    assert.equal(sha256, createHash('sha256').update(zip).digest('hex'));
    const entries = await unzip(zip);
    assert.deepEqual(entries.map((e) => e.name), expected);
    for (const entry of entries) {
      assert.equal(entry.content.toString(), tree[entry.name as keyof typeof tree], entry.name);
      assert.equal(entry.mode, entry.name === 'bin/run.sh' ? 0o100755 : 0o100644, `${entry.name} mode`);
    }
  });

  test('the same tree gives the same bytes, wherever it is and whatever its mtimes', async () => {
    const a = join(work, 'zip-same-a');
    writeTree(a, tree);
    const first = await zipDirectory(a);
    const b = join(work, 'elsewhere', 'zip-same-b');
    cpSync(a, b, { recursive: true });
    utimesSync(join(b, 'index.js'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
    const second = await zipDirectory(b);
    assert.ok(first.zip.equals(second.zip), 'identical zips');
    assert.equal(first.sha256, second.sha256);
    writeFileSync(join(b, 'lib/util.js'), 'exports.answer = 43;\n');
    assert.notEqual((await zipDirectory(b)).sha256, first.sha256, 'a changed file changes the zip');
  });

  test('a directory whose files are all ignored is refused', async () => {
    const dir = join(work, 'zip-empty');
    writeTree(dir, { 'x.log': 'x', '.fnvmignore': '*\n' });
    await assert.rejects(zipDirectory(dir), /nothing to deploy/);
  });
});

describe('fnvm against a real server', () => {
  const token = 'cli-test-token';
  let fnvm: TestServer;
  let env: Record<string, string>;
  const cli = (args: string[], extra: Record<string, string> = {}): Promise<CliRun> => runCli(args, { ...env, ...extra }, { cwd: work });
  const ok = (run: CliRun, what: string) => assert.equal(run.code, 0, `${what}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);

  before(async () => {
    fnvm = await startTestServer({ apiToken: token });
    env = { FNVM_URL: fnvm.url, FNVM_API_TOKEN: token };
    writeTree(work, {
      'hello.js': 'exports.handler = async (event) => { console.log("hello got", JSON.stringify(event)); return { greeting: process.env.GREETING, name: event.name ?? null }; };\n',
      'hello_py.py': 'def handler(event):\n    print("python got", event.get("n"))\n    return {"double": event.get("n", 0) * 2}\n',
      'broken.js': 'exports.handler = async () => { this is not javascript };\n',
      'thrower.js': 'exports.handler = async () => { console.log("about to throw"); throw new TypeError("boom"); };\n',
      'sleeper.js': 'exports.handler = () => new Promise((resolve) => setTimeout(resolve, 10000));\n',
      'event.json': '{"name": "from a file", "nested": {"list": [1, 2, 3]}}\n',
    });
  });

  after(async () => {
    await fnvm.stop();
    assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
  });

  test('--help for every command', async () => {
    const expectations: Array<[string[], string[]]> = [
      [[], ['deploy', 'invoke', 'logs', 'ls', 'get', 'rm', 'serve', 'images', 'FNVM_URL']],
      [['deploy'], ['Usage: fnvm deploy', '--name', '--runtime', '--handler', '--memory', '--timeout', '--env', '--json']],
      [['invoke'], ['Usage: fnvm invoke', '--event', '@file', '--json']],
      [['logs'], ['Usage: fnvm logs', '--limit', '--json']],
      [['ls'], ['Usage: fnvm ls', '--json']],
      [['get'], ['Usage: fnvm get', '--json']],
      [['rm'], ['Usage: fnvm rm', '--json']],
      [['serve'], ['Usage: fnvm serve']],
      [['images', 'build'], ['Usage: fnvm images build']],
    ];
    for (const [command, words] of expectations) {
      const run = await cli([...command, '--help']);
      ok(run, command.join(' '));
      for (const word of words) assert.ok(run.stdout.includes(word), `fnvm ${command.join(' ')} --help mentions ${word}:\n${run.stdout}`);
    }
  });

  test('deploy a .js file, invoke it with --event JSON and @file, read its logs', async () => {
    const deployed = await cli(['deploy', 'hello.js', '--env', 'GREETING=hi there', '--memory', '192', '--timeout', '12', '--json']);
    ok(deployed, 'deploy');
    const item = JSON.parse(deployed.stdout);
    assert.equal(item.name, 'hello');
    assert.equal(item.runtime, 'node');
    assert.equal(item.state, 'ready');
    assert.equal(item.memory_mb, 192);
    assert.equal(item.timeout_seconds, 12);
    assert.deepEqual(item.env_vars, { GREETING: 'hi there' });
    assert.match(item.code, /hello got/);
    assert.match(deployed.stderr, /hello: ready/);

    const invoked = await cli(['invoke', 'hello', '--event', '{"name": "World"}']);
    ok(invoked, 'invoke');
    assert.deepEqual(JSON.parse(invoked.stdout), { greeting: 'hi there', name: 'World' });
    assert.match(invoked.stderr, /hello got \{"name":"World"\}/);

    const fromFile = await cli(['invoke', 'hello', '--event', '@event.json', '--json']);
    ok(fromFile, 'invoke @file');
    const answer = JSON.parse(fromFile.stdout);
    assert.equal(answer.status, 'success');
    assert.deepEqual(answer.response, { greeting: 'hi there', name: 'from a file' });
    assert.deepEqual(answer.logs, ['hello got {"name":"from a file","nested":{"list":[1,2,3]}}']);

    const logs = await cli(['logs', 'hello', '--limit', '10']);
    ok(logs, 'logs');
    const lines = logs.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4, logs.stdout);
    assert.match(lines[0]!, /^\S+Z {2}[0-9a-f-]{36} {2}success {2}[\d.]+ ms$/);
    assert.equal(lines[1], '    hello got {"name":"World"}');
    assert.ok(lines[2]!.includes(`  ${answer.request_id}  success  `), 'the newest last');
    assert.equal(lines[3], '    hello got {"name":"from a file","nested":{"list":[1,2,3]}}');

    const logsJson = await cli(['logs', 'hello', '--json', '--limit', '1']);
    ok(logsJson, 'logs --json');
    const history = JSON.parse(logsJson.stdout);
    assert.equal(history.total, 2);
    assert.equal(history.items.length, 1);
    assert.equal(history.items[0].request_id, answer.request_id);
  });

  test('deploy a .py file (runtime from the extension) and invoke it', async () => {
    const deployed = await cli(['deploy', 'hello_py.py']);
    ok(deployed, 'deploy');
    assert.match(deployed.stdout, /^hello_py ready \(version 1, python, id [0-9a-f-]{36}\)\n$/);
    const invoked = await cli(['invoke', 'hello_py', '--event', '{"n": 21}']);
    ok(invoked, 'invoke');
    assert.deepEqual(JSON.parse(invoked.stdout), { double: 42 });
    assert.match(invoked.stderr, /python got 21/);
  });

  test('deploy again updates the function in place (PUT); a new version that does not load changes nothing', async () => {
    const before = JSON.parse((await cli(['get', 'hello'])).stdout);
    writeFileSync(join(work, 'hello.js'), 'exports.handler = async () => ({ version: "two" });\n');
    const updated = await cli(['deploy', 'hello.js', '--json']);
    ok(updated, 'update');
    const item = JSON.parse(updated.stdout);
    assert.equal(item.id, before.id);
    assert.equal(item.version, before.version + 1);
    assert.deepEqual(item.env_vars, { GREETING: 'hi there' }, 'kept without --env');
    assert.match(updated.stderr, /updating hello/);
    assert.deepEqual(JSON.parse((await cli(['invoke', 'hello'])).stdout), { version: 'two' });

    const broken = await cli(['deploy', 'broken.js', '--name', 'hello']);
    assert.equal(broken.code, 1, broken.stderr);
    assert.match(broken.stderr, /^fnvm: deployment of hello failed: .*SyntaxError/m);
    const after = JSON.parse((await cli(['get', 'hello', '--json'])).stdout);
    assert.equal(after.version, item.version, 'the 400 stored nothing');
  });

  test('a deploy that fails in the VM exits non-zero with the runtime\'s error', async () => {
    const run = await cli(['deploy', 'broken.js', '--json']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /broken: error \(SyntaxError: /);
    assert.match(run.stderr, /^fnvm: deployment of broken failed: SyntaxError: /m);
    const item = JSON.parse(run.stdout); // --json: the item, in error
    assert.equal(item.state, 'error');
    assert.match(item.error, /^SyntaxError: /);
  });

  test('invoke --async queues the event and prints its request id; it runs as an async attempt', async () => {
    ok(await cli(['deploy', 'thrower.js', '--name', 'queued-thrower']), 'deploy thrower');
    const queued = await cli(['invoke', 'queued-thrower', '--async', '--event', '{"n": 1}']);
    assert.equal(queued.code, 0, queued.stderr);
    const requestId = queued.stdout.trim();
    assert.match(requestId, /^[0-9a-f-]{36}$/);
    const first = await eventually('its attempt', async () => {
      const items = (await fnvm.api('/v1/functions/queued-thrower/logs', { headers: { authorization: `Bearer ${token}` } })).body.items
        .filter((r: { request_id: string }) => r.request_id === requestId);
      return items.length > 0 ? items : undefined;
    });
    assert.deepEqual(first.map((r: { attempt: number; async: boolean }) => [r.attempt, r.async]), [[1, true]]);
    ok(await cli(['rm', 'queued-thrower']), 'rm queued-thrower'); // its queued retry goes with it
  });

  test('invoke exits non-zero when the handler throws or times out', async () => {
    ok(await cli(['deploy', 'thrower.js']), 'deploy thrower');
    const thrown = await cli(['invoke', 'thrower']);
    assert.equal(thrown.code, 1);
    assert.equal(thrown.stdout, '');
    assert.match(thrown.stderr, /about to throw/);
    assert.match(thrown.stderr, /^fnvm: invocation failed: TypeError: boom$/m);
    const json = await cli(['invoke', 'thrower', '--json']);
    assert.equal(json.code, 1);
    const answer = JSON.parse(json.stdout);
    assert.equal(answer.status, 'error');
    assert.equal(answer.error.type, 'TypeError');

    ok(await cli(['deploy', 'sleeper.js', '--timeout', '1']), 'deploy sleeper');
    const slow = await cli(['invoke', 'sleeper']);
    assert.equal(slow.code, 1);
    assert.match(slow.stderr, /^fnvm: invocation timed out: /m);
  });

  test('ls, get and rm, with and without --json', async () => {
    const list = await cli(['ls']);
    ok(list, 'ls');
    const [header, ...rows] = list.stdout.trimEnd().split('\n');
    assert.match(header!, /^NAME +RUNTIME +STATE +VERSION +MEMORY +UPDATED$/);
    const helloRow = rows.find((row) => row.startsWith('hello '));
    assert.match(helloRow ?? '', /^hello +node +ready +2 +192 MiB +\d{4}-\d\d-\d\dT/);
    assert.match(rows.find((row) => row.startsWith('hello_py ')) ?? '', /^hello_py +python +ready +1 +256 MiB /);
    assert.match(rows.find((row) => row.startsWith('broken ')) ?? '', /^broken +node +error +1 /);

    const listJson = JSON.parse((await cli(['ls', '--json'])).stdout);
    assert.deepEqual(listJson.map((f: any) => f.name).sort(), ['broken', 'hello', 'hello_py', 'sleeper', 'thrower']);

    const got = await cli(['get', 'hello_py']);
    ok(got, 'get');
    const item = JSON.parse(got.stdout);
    assert.equal(item.name, 'hello_py');
    assert.equal(item.runtime, 'python');
    assert.equal(JSON.parse((await cli(['get', item.id, '--json'])).stdout).name, 'hello_py', 'ids work too');

    const removed = await cli(['rm', 'hello_py']);
    ok(removed, 'rm');
    assert.equal(removed.stdout, 'deleted hello_py\n');
    const gone = await cli(['get', 'hello_py']);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'fnvm: function hello_py not found\n');
    assert.equal(gone.stdout, '');

    const removedJson = await cli(['rm', 'broken', '--json']);
    ok(removedJson, 'rm --json');
    assert.equal(JSON.parse(removedJson.stdout).name, 'broken');
  });

  test('API errors, a wrong token and no server give one clear line and exit 1', async () => {
    const wrong = await cli(['ls'], { FNVM_API_TOKEN: 'not-the-token' });
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stderr, 'fnvm: missing or invalid bearer token\n');
    assert.equal(wrong.stdout, '');
    const none = await runCli(['invoke', 'hello'], { FNVM_URL: fnvm.url }, { cwd: work });
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'fnvm: missing or invalid bearer token\n');

    const missing = await cli(['invoke', 'no-such-function']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'fnvm: function no-such-function not found\n');

    const badEvent = await cli(['invoke', 'hello', '--event', '{not json']);
    assert.equal(badEvent.code, 1);
    assert.match(badEvent.stderr, /^fnvm: --event is not valid JSON/);

    const port = await freePort();
    const refused = await cli(['ls', '--json'], { FNVM_URL: `http://127.0.0.1:${port}` });
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, new RegExp(`^fnvm: cannot reach the fnvm server at http://127\\.0\\.0\\.1:${port}: connection refused`));
  });
});

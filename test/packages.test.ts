// Tests of the host's package store on real zips (yazl's, and crafted byte by byte where no library writes the bad
// case), real mkfs.ext4 images read back with e2fsprogs (debugfs rdump/stat, e2fsck) without mounting them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { deflateRawSync } from 'node:zlib';
import yazl from 'yazl';
import { PackageStore } from '../src/packages/store.js';
import { PackageError, packageLimits } from '../src/packages/types.js';
import { inspectZip } from '../src/packages/zip.js';
import { taskDiskBytes } from '../src/vm/task-disk.js';
import { rawZip, type RawEntry } from './support/raw-zip.js';
import { zipOf, type Files } from './support/zips.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;

let root: string;
let next = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'fnvm-packages-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A store on a fresh directory, with its own scratch directory (so that a test sees what is left in it). */
async function freshStore(options: { mkfs?: string } = {}): Promise<{ store: PackageStore; dir: string; scratch: string }> {
  const base = join(root, `s${next++}`);
  const dir = join(base, 'packages');
  const scratch = join(base, 'scratch');
  await mkdir(scratch, { recursive: true });
  return { store: new PackageStore(dir, { ...options, scratchDir: scratch }), dir, scratch };
}

/** Every path under `dir` (none if it does not exist). */
async function listing(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true })).sort();
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function debugfs(image: string, command: string): Promise<string> {
  const { stdout } = await execFileAsync('debugfs', ['-R', command, image], { maxBuffer: 64 * MiB });
  return stdout;
}

/** A zip from yazl with files (path -> content, unix mode) and empty directory entries. */
async function yazlZip(files: Record<string, { content: string | Buffer; mode?: number }>, dirs: string[] = []): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const mtime = new Date('2026-01-01T00:00:00Z');
  for (const dir of dirs) zip.addEmptyDirectory(dir, { mtime });
  for (const [path, file] of Object.entries(files)) zip.addBuffer(Buffer.from(file.content), path, { mtime, mode: file.mode ?? 0o100644 });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

const ok: RawEntry = { name: 'index.js', data: Buffer.from('exports.handler = () => 1;\n') };

describe('refused packages: a clear message, and nothing written', () => {
  const refusals: Array<[string, () => Buffer | Promise<Buffer>, RegExp]> = [
    ['not a zip', () => randomBytes(4096), /^not a zip file/],
    ['an empty upload', () => Buffer.alloc(0), /empty: not a zip/],
    ['a zip with no entries', () => zipOf({}), /no files/],
    ['a zip with only directories', () => rawZip([{ name: 'lib/', mode: 0o040755 }, { name: 'lib/sub/', mode: 0o040755 }]), /no files/],
    ['more than 10,000 entries', () => rawZip(Array.from({ length: 10_001 }, (_, i) => ({ name: `f${i}` }))), /10001 entries: at most 10000/],
    ['an absolute path', () => rawZip([ok, { name: '/etc/cron.d/x', data: Buffer.from('x') }]), /entry "\/etc\/cron\.d\/x": an absolute path/],
    ['a drive letter', () => rawZip([ok, { name: 'C:/Windows/x.dll', data: Buffer.from('x') }]), /entry "C:\/Windows\/x\.dll": an absolute path/],
    ['a ".." segment', () => rawZip([ok, { name: 'lib/../../evil.js', data: Buffer.from('x') }]), /entry "lib\/\.\.\/\.\.\/evil\.js": a "\.\." segment/],
    ['a lone ".."', () => rawZip([ok, { name: '..', data: Buffer.from('x') }]), /entry "\.\.": a "\.\." segment/],
    ['a backslash', () => rawZip([ok, { name: '..\\evil.js', data: Buffer.from('x') }]), /entry "\.\.\\evil\.js": its name has a backslash/],
    ['a NUL byte', () => rawZip([ok, { name: 'a\0.js', data: Buffer.from('x') }]), /entry "a\\x00\.js": its name has a NUL byte/],
    ['a symlink', () => zipOf({ 'index.js': 'x', link: '/etc/passwd' }, { link: 0o120777 }), /entry "link": a symlink/],
    ['a fifo', () => rawZip([ok, { name: 'pipe', mode: 0o010644 }]), /entry "pipe": a special file \(unix type 0o10000\)/],
    ['a block device', () => rawZip([ok, { name: 'disk', mode: 0o060600 }]), /entry "disk": a special file \(unix type 0o60000\)/],
    ['a duplicate entry', () => rawZip([ok, ok]), /entry "index\.js" is in the zip twice/],
    ['a duplicate once normalised', () => rawZip([{ ...ok, name: 'lib/a.js' }, { ...ok, name: './lib//a.js' }]), /entry "lib\/a\.js" is in the zip twice/],
    ['a directory listed twice', () => rawZip([ok, { name: 'lib/', mode: 0o040755 }, { name: 'lib', mode: 0o040755 }]), /entry "lib" is in the zip twice/],
    ['a file that is also a directory', () => rawZip([{ ...ok, name: 'lib' }, { ...ok, name: 'lib/a.js' }]), /entry "lib\/a\.js": "lib" is a file in the zip and also a directory/],
    ['a directory that is also a file', () => rawZip([{ name: 'lib/', mode: 0o040755 }, { ...ok, name: 'lib' }]), /entry "lib" is in the zip as a file and also as a directory/],
    ['a directory with content', () => rawZip([ok, { name: 'lib/', mode: 0o040755, data: Buffer.from('hidden') }]), /entry "lib\/": a directory with content/],
    ['an encrypted entry', () => rawZip([ok, { name: 'secret.js', data: Buffer.from('x'), flags: 0x801 }]), /entry "secret\.js": encrypted/],
    ['an unsupported compression method', () => rawZip([ok, { name: 'a.bz2', method: 12, rawData: randomBytes(64), size: 100 }]), /entry "a\.bz2": compression method 12 \(bzip2\) is not supported/],
    ['an unknown compression method', () => rawZip([ok, { name: 'a.x', method: 77, rawData: randomBytes(64), size: 100 }]), /entry "a\.x": compression method 77 \(unknown\)/],
    ['a local header with another name', () => rawZip([ok, { name: 'lib/a.js', data: Buffer.from('x'), local: { name: 'lib/b.js' } }]),
      /entry "lib\/a\.js": its local header disagrees with the central directory \(name "lib\/b\.js"\)/],
    ['a local header with another method', () => rawZip([ok, { name: 'a.js', data: Buffer.from('xyz'), method: 0, local: { method: 8 } }]), /entry "a\.js": its local header disagrees .*compression method 8/],
    ['a local header that is not encrypted', () => rawZip([ok, { name: 'a.js', data: Buffer.from('x'), flags: 0x801, local: { flags: 0x800 } }]), /entry "a\.js": encrypted/],
    ['a local header with another size', () => rawZip([ok, { name: 'a.js', data: Buffer.from('xyz'), local: { size: 5 } }]), /entry "a\.js": its local header disagrees .*size 5/],
    ['one entry declaring more than 250 MiB', () => rawZip([ok, { name: 'huge.bin', rawData: deflateRawSync(Buffer.alloc(1024)), size: 251 * MiB }]), /entry "huge\.bin": unzips to 263192576 bytes/],
    ['entries declaring more than 250 MiB in all', () => rawZip([ok, ...[1, 2, 3].map((i) => ({ name: `part${i}.bin`, rawData: deflateRawSync(Buffer.alloc(1024)), size: 100 * MiB }))]),
      /unzipped, the package is over 250 MiB \(at entry "part3\.bin"\)/],
    ['a real bomb: 260 MiB of zeros, declared', () => zipOf({ 'index.js': 'x', 'zeros.bin': Buffer.alloc(260 * MiB) }), /entry "zeros\.bin": unzips to 272629760 bytes/],
    ['a bomb whose size is a lie: 300 MiB of zeros declared as 1 KiB', () => rawZip([ok, { name: 'bomb.bin', rawData: deflateRawSync(Buffer.alloc(300 * MiB)), size: 1024 }]),
      /entry "bomb\.bin": inflates to more than the 1024 bytes it declares/],
    ['a streamed bomb: 300 MiB declared as 2 MiB', () => rawZip([ok, { name: 'bomb.bin', rawData: deflateRawSync(Buffer.alloc(300 * MiB)), size: 2 * MiB }]),
      /entry "bomb\.bin": inflates to more than the 2097152 bytes it declares/],
    ['data that inflates short of its size', () => rawZip([ok, { name: 'short.txt', data: Buffer.from('abc'), size: 10 }]), /entry "short\.txt": inflates to 3 bytes, not the 10 it declares/],
    ['a stored entry whose sizes differ', () => rawZip([ok, { name: 'a.txt', method: 0, data: Buffer.from('abc'), size: 5 }]), /entry "a\.txt": stored uncompressed, yet 3 bytes in the zip declare 5 unzipped/],
    ['a wrong CRC-32', () => rawZip([ok, { name: 'a.txt', data: Buffer.from('abc'), crc: 1234 }]), /entry "a\.txt": CRC-32 mismatch/],
    ['corrupt deflate data', () => rawZip([ok, { name: 'a.txt', method: 8, rawData: Buffer.from([0xff, 0xff, 0xff, 0xff]), size: 10 }]), /entry "a\.txt": its deflate data is corrupt/],
    ['a zip over 50 MiB', () => yazlStored(51 * MiB), /the zip is 534\d{5} bytes: at most 52428800 \(50 MiB\)/],
  ];

  for (const [what, make, message] of refusals) {
    test(what, async () => {
      const { store, dir, scratch } = await freshStore();
      const zip = await make();
      await assert.rejects(store.put(zip), (error: unknown) => {
        assert.ok(error instanceof PackageError, `a PackageError, not ${String(error)}`);
        assert.match(error.message, message);
        return true;
      });
      assert.deepEqual(await listing(dir), [], 'nothing in the store');
      assert.deepEqual(await listing(scratch), [], 'nothing left in scratch space');
      assert.equal(store.has(sha256(zip)), false);
    });
  }

  test('a local header the central directory points past the end of the zip', async () => {
    const zip = rawZip([ok, { name: 'a.txt', data: Buffer.from('abc') }]);
    // The second central header's local-header offset: after the end of the data.
    const central = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 1);
    zip.writeUInt32LE(zip.length - 10, central + 42);
    const { store, dir } = await freshStore();
    await assert.rejects(store.put(zip), (error: unknown) => error instanceof PackageError && /entry "a\.txt": its local header is unreadable/.test(error.message));
    assert.deepEqual(await listing(dir), []);
  });
});

async function yazlStored(bytes: number): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  zip.addBuffer(randomBytes(bytes), 'noise.bin', { compress: false });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

describe('a stored package', () => {
  const big = randomBytes(3 * MiB); // streams to disk (over 1 MiB)
  const medium = Buffer.from('0123456789abcdef'.repeat(12 * 1024)); // 192 KiB: inflated on the pool
  const files: Record<string, { content: string | Buffer; mode?: number }> = {
    'index.js': { content: 'exports.handler = () => require("./lib/answer").answer;\n' },
    'lib/answer.js': { content: 'exports.answer = 42;\n' },
    'bin/run': { content: '#!/bin/sh\necho run\n', mode: 0o100755 },
    'bin/not-run': { content: 'data\n', mode: 0o100600 },
    'empty.txt': { content: '' },
    'data/big.bin': { content: big },
    'data/medium.txt': { content: medium },
    'deep/a/b/c/d/e.txt': { content: 'deep\n' },
    'naïve €.txt': { content: 'unicode name\n' },
  };
  const dirs = ['emptydir/', 'lib/'];
  let zip: Buffer;
  let store: PackageStore;
  let dir: string;
  let scratch: string;

  before(async () => {
    zip = await yazlZip(files, dirs);
    ({ store, dir, scratch } = await freshStore());
  });

  test('put: its info, its directory, and no scratch space left', async () => {
    const info = await store.put(zip);
    const unpacked = Object.values(files).reduce((sum, f) => sum + Buffer.byteLength(f.content), 0);
    assert.deepEqual(info, { sha256: sha256(zip), size: zip.length, unpacked_size: unpacked, files: Object.keys(files).length });
    assert.deepEqual(await listing(dir), [info.sha256, ...['entries.json', 'image.ext4', 'info.json', 'package.zip'].map((f) => join(info.sha256, f))]);
    assert.deepEqual(await listing(scratch), []);
    assert.ok(store.has(info.sha256));
    assert.ok((await readFile(store.zipPath(info.sha256))).equals(zip), 'the zip as uploaded');
  });

  test('the image: exactly the task disk\'s size, sparse, a clean ext4 with the files, their bytes and modes, owned by root', async () => {
    const image = store.imagePath(sha256(zip));
    const stats = await stat(image);
    assert.equal(stats.size, taskDiskBytes);
    assert.ok(stats.blocks * 512 < 16 * MiB, `sparse: ${stats.blocks * 512} bytes allocated`);
    await execFileAsync('e2fsck', ['-f', '-n', image]); // exits non-zero on any inconsistency

    const out = await mkdtemp(join(root, 'rdump-'));
    await debugfs(image, `rdump / ${out}`);
    const dumped = new Map<string, { mode: number; content?: Buffer }>();
    for (const path of await readdir(out, { recursive: true })) {
      const s = await stat(join(out, path));
      dumped.set(path, { mode: s.mode & 0o7777, ...(s.isFile() ? { content: await readFile(join(out, path)) } : {}) });
    }
    const expected = new Map<string, { mode: number; content?: Buffer }>();
    for (const [path, file] of Object.entries(files)) {
      expected.set(path, { mode: (file.mode ?? 0) & 0o111 ? 0o755 : 0o644, content: Buffer.from(file.content) });
      const segments = path.split('/');
      for (let i = 1; i < segments.length; i++) expected.set(segments.slice(0, i).join('/'), { mode: 0o755 });
    }
    for (const d of dirs) expected.set(d.slice(0, -1), { mode: 0o755 });
    expected.set('lost+found', { mode: 0o700 });
    assert.deepEqual([...dumped.keys()].sort(), [...expected.keys()].sort());
    for (const [path, want] of expected) {
      const got = dumped.get(path);
      assert.equal(got?.mode, want.mode, `${path}: mode`);
      if (want.content) assert.ok(got?.content?.equals(want.content), `${path}: content`);
    }

    for (const path of ['/', '/bin/run', '/data/big.bin', '/deep/a/b/c']) {
      const inode = await debugfs(image, `stat ${path}`);
      assert.match(inode, /User:\s+0\s+Group:\s+0/, `${path} is root's`);
    }
    const superblock = (await execFileAsync('dumpe2fs', ['-h', image])).stdout;
    assert.match(superblock, /Filesystem volume name:\s+fnvm-task/);
    assert.doesNotMatch(superblock, /has_journal/);
    assert.match((await debugfs(image, 'stat /lib/answer.js')).replace(/\s+/g, ' '), /mtime: 0x[0-9a-f]+(:[0-9a-f]+)? -- Thu Jan {1,2}1 \d\d:00:00 2026/, 'mtime from the zip');
  });

  test('files() and readFile()', async () => {
    const sha = sha256(zip);
    assert.deepEqual(await store.files(sha), Object.entries(files).map(([path, f]) => ({ path, size: Buffer.byteLength(f.content) })));
    for (const [path, f] of Object.entries(files)) assert.ok((await store.readFile(sha, path)).equals(Buffer.from(f.content)), path);
    assert.equal((await store.readFile(sha, './lib//answer.js')).toString(), 'exports.answer = 42;\n', 'paths are normalised');
    const refused: Array<[string, RegExp]> = [
      ['nothing.js', /the package has no file "nothing\.js"/],
      ['../index.js', /the package has no file "\.\.\/index\.js"/],
      ['lib', /"lib" is a directory/],
      ['deep/a', /"deep\/a" is a directory/],
      ['emptydir/', /"emptydir" is a directory/],
    ];
    for (const [path, message] of refused) {
      await assert.rejects(store.readFile(sha, path), (error: unknown) => error instanceof PackageError && message.test(error.message), path);
    }
  });

  test('put again: the same info and no second copy; a new store on the same directory knows it', async () => {
    const again = await store.put(zip);
    assert.equal(again.sha256, sha256(zip));
    assert.deepEqual((await readdir(dir)).sort(), [sha256(zip)]);
    const reopened = new PackageStore(dir, { mkfs: '/nonexistent/mkfs', scratchDir: scratch });
    assert.ok(reopened.has(sha256(zip)));
    assert.deepEqual(await reopened.put(zip), again, 'stored already: no build (its mkfs would fail)');
  });
});

/** An mkfs.ext4 that counts its runs in `log`. */
async function countingMkfs(dir: string): Promise<{ mkfs: string; runs: () => Promise<number> }> {
  const log = join(dir, 'mkfs-runs');
  const mkfs = join(dir, 'mkfs-counting');
  await writeFile(mkfs, `#!/bin/sh\necho run >> '${log}'\nexec mkfs.ext4 "$@"\n`);
  await chmod(mkfs, 0o755);
  return { mkfs, runs: async () => (existsSync(log) ? (await readFile(log, 'utf8')).split('\n').filter(Boolean).length : 0) };
}

describe('sharing, removal and sweeping', () => {
  test('concurrent puts of one zip share one build', async () => {
    const tools = await mkdtemp(join(root, 'tools-'));
    const { mkfs, runs } = await countingMkfs(tools);
    const { store, dir } = await freshStore({ mkfs });
    const zip = await zipOf({ 'index.js': 'exports.handler = () => "shared";' });
    const infos = await Promise.all([store.put(zip), store.put(zip), store.put(zip)]);
    assert.deepEqual(infos.map((i) => i.sha256), [sha256(zip), sha256(zip), sha256(zip)]);
    assert.equal(await runs(), 1);
    assert.deepEqual(await readdir(dir), [sha256(zip)]);
    await store.put(zip);
    assert.equal(await runs(), 1, 'stored already');
  });

  test('remove, and a put after a remove builds again', async () => {
    const { store, dir } = await freshStore();
    const zip = await zipOf({ 'index.js': 'exports.handler = () => "removed";' });
    const { sha256: sha } = await store.put(zip);
    await store.remove(sha);
    assert.equal(store.has(sha), false);
    assert.deepEqual(await readdir(dir), []);
    await store.remove(sha); // removing what is gone is no error
    // A put and a remove issued together: the remove waits for the put, and the package is gone after both.
    await Promise.all([store.put(zip), store.remove(sha)]);
    assert.deepEqual(await readdir(dir), []);
    // A put issued after a remove is not answered by the put before it: the package is there after all three.
    await Promise.all([store.put(zip), store.remove(sha), store.put(zip)]);
    assert.ok(store.has(sha));
    assert.deepEqual(await readdir(dir), [sha]);
    await assert.rejects(store.remove('../../etc'), /not a package's SHA-256/);
  });

  test('sweep keeps the packages in use and removes the rest, and what a crash left behind', async () => {
    const { store, dir, scratch } = await freshStore();
    // Scratch space of a process that is gone is swept; this process's and a live one's (pid 1) are left alone.
    const exited = execFile(process.execPath, ['-e', '']);
    await new Promise((resolve) => exited.on('exit', resolve));
    const dead = `fnvm-package-${exited.pid}-abc`;
    for (const name of [dead, `fnvm-package-${process.pid}-def`, 'fnvm-package-1-ghi', 'unrelated']) await mkdir(join(scratch, name));
    const shas: string[] = [];
    for (const n of [1, 2, 3]) shas.push((await store.put(await zipOf({ 'index.js': `exports.handler = () => ${n};` }))).sha256);
    await mkdir(join(dir, `.staging-${shas[0]}-0000`));
    await writeFile(join(dir, `.staging-${shas[0]}-0000`, 'image.ext4'), 'half an image');
    await mkdir(join(dir, `.trash-${shas[1]}-0000`));
    await store.sweep(new Set([shas[1] ?? '']));
    assert.deepEqual(await readdir(dir), [shas[1]]);
    assert.deepEqual([store.has(shas[0] ?? ''), store.has(shas[1] ?? ''), store.has(shas[2] ?? '')], [false, true, false]);
    assert.deepEqual((await readdir(scratch)).sort(), [`fnvm-package-${process.pid}-def`, 'fnvm-package-1-ghi', 'unrelated'].sort());
    const missing = new PackageStore(join(root, 'never-created'));
    await missing.sweep(new Set()); // no directory yet: nothing to do
  });
});

describe('building the image', () => {
  test('an mkfs that fails leaves no image and no package behind, and is an Error, not a PackageError', async () => {
    const tools = await mkdtemp(join(root, 'tools-'));
    const mkfs = join(tools, 'mkfs-failing');
    // Writes part of an image to its target, then fails, as an mkfs killed halfway would.
    await writeFile(mkfs, '#!/bin/sh\nfor a in "$@"; do case "$a" in *.ext4) echo partial > "$a";; esac; done\necho "mkfs: simulated failure" >&2\nexit 1\n');
    await chmod(mkfs, 0o755);
    const { store, dir, scratch } = await freshStore({ mkfs });
    const zip = await zipOf({ 'index.js': 'x' });
    await assert.rejects(store.put(zip), (error: unknown) => {
      assert.ok(error instanceof Error && !(error instanceof PackageError), String(error));
      assert.match(error.message, /building the package's image failed: .*simulated failure/);
      return true;
    });
    assert.deepEqual(await listing(dir), []);
    assert.deepEqual(await listing(scratch), []);
    assert.equal(store.has(sha256(zip)), false);
  });

  test('a store run by another user than root still builds an image owned by root (mkfs in a user namespace)', async () => {
    // As root here, the store runs in a child process as nobody (65534); run as another user, it is that user.
    const dir = await mkdtemp(join(tmpdir(), 'fnvm-packages-user-'));
    try {
      await chmod(dir, 0o777);
      const zip = await zipOf({ 'index.js': 'exports.handler = () => 1;', 'lib/a.js': 'a' });
      await writeFile(join(dir, 'package.zip'), zip);
      await chmod(join(dir, 'package.zip'), 0o644);
      const store = new URL('../src/packages/store.js', import.meta.url).pathname;
      const script = `import { PackageStore } from ${JSON.stringify(store)}; import { readFileSync } from 'node:fs';
const info = await new PackageStore(${JSON.stringify(join(dir, 'store'))}, { scratchDir: ${JSON.stringify(dir)} }).put(readFileSync(${JSON.stringify(join(dir, 'package.zip'))}));
console.log(JSON.stringify({ uid: process.getuid(), sha256: info.sha256 }));`;
      const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath] : [process.execPath];
      const [command = '', ...args] = asUser;
      const { stdout } = await execFileAsync(command, [...args, '--input-type=module', '-e', script], { cwd: dir });
      const result = JSON.parse(stdout);
      assert.notEqual(result.uid, 0, 'the store ran as another user than root');
      assert.equal(result.sha256, sha256(zip));
      const image = join(dir, 'store', sha256(zip), 'image.ext4');
      assert.equal((await stat(image)).uid, result.uid, 'the image file is that user\'s');
      for (const path of ['/', '/index.js', '/lib', '/lib/a.js']) assert.match(await debugfs(image, `stat ${path}`), /User:\s+0\s+Group:\s+0/, `${path} is root's in the image`);
      assert.equal(await debugfs(image, 'cat /lib/a.js'), 'a');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a package at both limits (10,000 files, 234 MiB) fits its image', async () => {
    const { store } = await freshStore();
    const files: Files = {};
    const block = randomBytes(1024);
    for (let i = 0; i < packageLimits.entries; i++) {
      // 24 KiB each, compressible but not zeros (mkfs would leave zero blocks as holes and so fit them for free).
      const content = Buffer.concat(Array.from({ length: 24 }, (_, k) => (k === 0 ? Buffer.from(`file ${i}`.padEnd(1024, '.')) : block)));
      files[`d${i % 100}/sub${i % 7}/f${i}.js`] = content;
    }
    const zip = await zipOf(files);
    const info = await store.put(zip);
    assert.equal(info.files, packageLimits.entries);
    assert.equal(info.unpacked_size, packageLimits.entries * 24 * 1024);
    const image = store.imagePath(info.sha256);
    await execFileAsync('e2fsck', ['-f', '-n', image]);
    assert.equal((await stat(image)).size, taskDiskBytes);
    const path = `d42/sub${9942 % 7}/f9942.js`;
    const { stdout } = await execFileAsync('debugfs', ['-R', `cat /${path}`, image], { encoding: 'buffer', maxBuffer: MiB });
    assert.ok(stdout.equals(Buffer.from(files[path] ?? '')), `${path} in the image`);
  });
});

test('inspectZip reads the directory without writing: entries in order, with kinds and modes', async () => {
  const zip = await yazlZip({ 'a.js': { content: 'a' }, 'bin/x': { content: 'x', mode: 0o100755 } }, ['empty/']);
  const { info, entries } = await inspectZip(zip);
  assert.deepEqual(info, { sha256: sha256(zip), size: zip.length, unpacked_size: 2, files: 2 });
  assert.deepEqual(entries.map((e) => [e.path, e.kind, e.size, e.executable]), [['empty', 'directory', 0, false], ['a.js', 'file', 1, false], ['bin/x', 'file', 1, true]]);
});

// Builds (or finds in the cache) the guest kernel, initramfs and runtime root filesystem.
// Sources are only Debian's apt (apt-get download + dpkg-deb -x) and the npm registry (npm pack).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { guestDir } from '../paths.js';
import { run } from '../exec.js';
import { builderVersion, recipe } from './recipe.js';

export interface GuestImages {
  hash: string;
  dir: string;
  kernel: string;
  initramfs: string;
  rootfs: string;
  versions: Record<string, string>;
}

export type Progress = (message: string) => void;

export function cacheDir(): string {
  return process.env.FNVM_CACHE_DIR ?? join(homedir(), '.cache', 'fnvm');
}

export async function recipeHash(): Promise<string> {
  const hash = createHash('sha256').update(JSON.stringify({ recipe, builderVersion }));
  const files = [...recipe.guestFiles.initramfs, ...recipe.guestFiles.rootfs];
  for (const file of files) hash.update(file).update(await readFile(join(guestDir, file)));
  return hash.digest('hex').slice(0, 16);
}

/** The images for the current recipe: from the cache, or built now (about a minute). */
export async function ensureImages(progress: Progress = () => {}): Promise<GuestImages> {
  const hash = await recipeHash();
  const dir = join(cacheDir(), 'images', hash);
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) await build(hash, dir, progress);
  const versions = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, string>;
  return {
    hash,
    dir,
    kernel: join(dir, 'vmlinuz'),
    initramfs: join(dir, 'initramfs.cpio'),
    rootfs: join(dir, 'rootfs.ext4'),
    versions,
  };
}

async function build(hash: string, dir: string, progress: Progress): Promise<void> {
  const started = Date.now();
  await mkdir(dirname(dir), { recursive: true });
  const work = await mkdtemp(join(dirname(dir), `.build-${hash}-`));
  try {
    progress(`building guest images ${hash} in ${dirname(dir)}`);
    const debs = await downloadDebs([recipe.kernelPackage, recipe.busyboxPackage, ...recipe.rootPackages], progress);
    const out = join(work, 'out');
    await mkdir(out);
    progress('unpacking kernel');
    const kernelVersion = await buildKernelAndModules(debs, work, out);
    progress('assembling initramfs');
    await buildInitramfs(debs, work, out);
    progress('assembling runtime root filesystem (node, python)');
    const versions = await buildRootfs(debs, work, out, progress);
    const manifest = { hash, kernel: kernelVersion, ...versions, built_at: new Date().toISOString() };
    await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2));
    try {
      await rename(out, dir);
    } catch (error) {
      if (!existsSync(join(dir, 'manifest.json'))) throw error; // else another builder won the race
    }
    progress(`guest images ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Debian packages by name -> cached .deb path, downloading the missing ones in one apt-get call. */
async function downloadDebs(names: readonly string[], progress: Progress): Promise<Map<string, string>> {
  const debDir = join(cacheDir(), 'downloads', 'apt');
  await mkdir(debDir, { recursive: true });
  const found = async (name: string) => {
    const dir = join(debDir, name);
    const files = existsSync(dir) ? (await readdir(dir)).filter((f) => f.endsWith('.deb')) : [];
    return files[0] ? join(dir, files[0]) : undefined;
  };
  const missing: string[] = [];
  for (const name of names) if (!(await found(name))) missing.push(name);
  if (missing.length) {
    progress(`apt-get download ${missing.length} packages`);
    const staging = await mkdtemp(join(debDir, '.dl-'));
    try {
      await aptDownload(missing, staging);
      for (const file of await readdir(staging)) {
        const name = (await run('dpkg-deb', ['-f', join(staging, file), 'Package'])).toString().trim();
        await mkdir(join(debDir, name), { recursive: true });
        await rename(join(staging, file), join(debDir, name, file));
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
  const paths = new Map<string, string>();
  for (const name of names) {
    const path = await found(name);
    if (!path) throw new Error(`apt-get download did not produce ${name}`);
    paths.set(name, path);
  }
  return paths;
}

async function aptDownload(names: string[], cwd: string): Promise<void> {
  try {
    await run('apt-get', ['download', ...names], { cwd });
  } catch (error) {
    // Fresh machines often have no package lists yet; root can fetch them.
    if (process.getuid?.() !== 0) throw new Error(`${(error as Error).message}\n(run: sudo apt-get update)`);
    await run('apt-get', ['update']);
    await run('apt-get', ['download', ...names], { cwd });
  }
}

async function unpack(deb: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  await run('dpkg-deb', ['-x', deb, into]);
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`image build: missing ${what}`);
  return value;
}

async function buildKernelAndModules(debs: Map<string, string>, work: string, out: string): Promise<string> {
  const root = join(work, 'kernel');
  await unpack(need(debs.get(recipe.kernelPackage), 'kernel package'), root);
  const vmlinuz = need((await readdir(join(root, 'boot'))).find((f) => f.startsWith('vmlinuz-')), 'vmlinuz');
  await cp(join(root, 'boot', vmlinuz), join(out, 'vmlinuz'));
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modulesDir = join(root, 'lib', 'modules', version);
  const order = await resolveModules(modulesDir, recipe.kernelModules);
  const initModules = join(work, 'initramfs', 'modules');
  await mkdir(initModules, { recursive: true });
  for (const path of order) await cp(path, join(initModules, basename(path)));
  await writeFile(join(initModules, 'order'), order.map((p) => basename(p, '.ko')).join('\n') + '\n');
  return version;
}

/**
 * Module files in load order (dependencies first). The .deb has no modules.dep (depmod makes it at
 * install time), so dependencies are read from each module's own `depends=` modinfo string.
 */
export async function resolveModules(modulesDir: string, wanted: readonly string[]): Promise<string[]> {
  const canonical = (name: string) => name.replace(/-/g, '_');
  const byName = new Map<string, string>();
  for (const entry of await readdir(modulesDir, { withFileTypes: true, recursive: true })) {
    if (entry.name.endsWith('.ko')) byName.set(canonical(basename(entry.name, '.ko')), join(entry.parentPath ?? entry.path, entry.name));
  }
  const order: string[] = [];
  const visit = async (name: string): Promise<void> => {
    const path = need(byName.get(canonical(name)), `kernel module ${name}`);
    if (order.includes(path)) return;
    const modinfo = (await readFile(path)).toString('latin1');
    const depends = /\0depends=([^\0]*)\0/.exec(modinfo)?.[1] ?? '';
    for (const dep of depends.split(',').filter(Boolean)) await visit(dep);
    if (!order.includes(path)) order.push(path);
  };
  for (const name of wanted) await visit(name);
  return order;
}

async function buildInitramfs(debs: Map<string, string>, work: string, out: string): Promise<void> {
  const root = join(work, 'initramfs');
  const busybox = join(work, 'busybox');
  await unpack(need(debs.get(recipe.busyboxPackage), 'busybox'), busybox);
  for (const d of ['bin', 'dev', 'proc', 'sys', 'newroot']) await mkdir(join(root, d), { recursive: true });
  await cp(join(busybox, 'bin', 'busybox'), join(root, 'bin', 'busybox'));
  await cp(join(guestDir, 'init.sh'), join(root, 'init'));
  // Uncompressed: the kernel then skips decompression, which is slow under TCG.
  await run('sh', ['-c', `cd '${root}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible -R 0:0 > '${join(out, 'initramfs.cpio')}'`]);
}

async function buildRootfs(
  debs: Map<string, string>,
  work: string,
  out: string,
  progress: Progress,
): Promise<Record<string, string>> {
  const root = join(work, 'rootfs');
  for (const name of recipe.rootPackages) await unpack(need(debs.get(name), name), root);
  await unpack(need(debs.get(recipe.busyboxPackage), 'busybox'), root);
  for (const d of ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'usr/share/lintian']) {
    await rm(join(root, d), { recursive: true, force: true });
  }
  await symlink('busybox', join(root, 'bin', 'sh'));
  progress(`npm pack ${recipe.nodePackage}`);
  const nodeVersion = await installNode(root, work);
  await mkdir(join(root, 'opt', 'fnvm'), { recursive: true });
  await cp(join(guestDir, 'node', 'agent.mjs'), join(root, 'opt', 'fnvm', 'agent.mjs'));
  await cp(join(guestDir, 'python', 'agent.py'), join(root, 'opt', 'fnvm', 'agent.py'));
  progress("compiling the Node agent's native helper");
  await buildNodeHelper(join(root, 'opt', 'fnvm', 'fnvm_sys.node'));
  await writeEtc(root);
  // var/task: where the agents mount a function's package (the task disk, src/vm/task-disk.ts).
  for (const d of ['tmp', 'proc', 'sys', 'dev', 'root', 'var/task']) await mkdir(join(root, d), { recursive: true });
  const sizeMiB = Math.ceil((await duBytes(root)) / 2 ** 20) + recipe.rootfsSlackMiB;
  progress(`mkfs.ext4 rootfs (${sizeMiB} MiB)`);
  await run('mkfs.ext4', [
    '-q', '-F', '-d', root, '-L', 'fnvm-root', '-O', '^has_journal', '-U', 'clear',
    '-E', 'hash_seed=6c0bd3b1-0e6c-4d7b-8d0a-6a4d8e0f1b1f', join(out, 'rootfs.ext4'), `${sizeMiB}M`,
  ]);
  const pythonVersion = (await readdir(join(root, 'usr', 'lib'))).find((d) => /^python3\.\d+$/.test(d)) ?? 'python3';
  return { node: nodeVersion, python: pythonVersion, debian_packages: recipe.rootPackages.length.toString() };
}

async function installNode(root: string, work: string): Promise<string> {
  const npmDir = join(cacheDir(), 'downloads', 'npm');
  await mkdir(npmDir, { recursive: true });
  const tgzName = `${recipe.nodePackage.replace('@', '-')}.tgz`;
  if (!existsSync(join(npmDir, tgzName))) await run('npm', ['pack', recipe.nodePackage, '--silent'], { cwd: npmDir });
  const unpacked = join(work, 'node');
  await mkdir(unpacked);
  await run('tar', ['-xzf', join(npmDir, tgzName), '-C', unpacked, 'package/bin/node']);
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await cp(join(unpacked, 'package', 'bin', 'node'), join(root, 'usr', 'bin', 'node'));
  return recipe.nodePackage.split('@')[1] ?? 'unknown';
}

/** The Node-API addon with which the Node agent steps the clock and reseeds (guest/node/fnvm_sys.c). */
async function buildNodeHelper(out: string): Promise<void> {
  const headers = (createRequire(import.meta.url)('node-api-headers') as { include_dir: string }).include_dir;
  await run('gcc', ['-O2', '-Wall', '-Werror', '-shared', '-fPIC', '-I', headers, '-o', out, join(guestDir, 'node', 'fnvm_sys.c')]);
}

async function writeEtc(root: string): Promise<void> {
  const etc = join(root, 'etc');
  await mkdir(join(etc, 'ssl', 'certs'), { recursive: true });
  await writeFile(join(etc, 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(etc, 'group'), 'root:x:0:\n');
  await writeFile(join(etc, 'hosts'), '127.0.0.1 localhost\n');
  await writeFile(join(etc, 'resolv.conf'), 'nameserver 10.0.2.3\n'); // QEMU user networking's DNS
  // ca-certificates' bundle is normally made by its postinst; make it here for Python's ssl.
  const certs = join(root, 'usr', 'share', 'ca-certificates', 'mozilla');
  const pems = existsSync(certs) ? await readdir(certs) : [];
  const bundle = await Promise.all(pems.sort().map((f) => readFile(join(certs, f), 'utf8')));
  await writeFile(join(etc, 'ssl', 'certs', 'ca-certificates.crt'), bundle.join('\n'));
  await mkdir(join(root, 'usr', 'lib', 'ssl'), { recursive: true });
  await symlink('/etc/ssl/certs/ca-certificates.crt', join(root, 'usr', 'lib', 'ssl', 'cert.pem'));
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath ?? entry.path, entry.name))).size + 4096;
    else total += 4096;
  }
  return total;
}

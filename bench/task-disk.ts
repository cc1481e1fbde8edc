// Task disk figures on a warm pool VM: attachTask (QMP retarget), the first package load (mount + import)
// against a second one (import only), and the first invoke.
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { run } from '../src/exec.js';
import { VmPool } from '../src/vm/pool.js';
import { taskDiskBytes } from '../src/vm/task-disk.js';
import { benchDriver } from './driver.js';
import { ms, percentile, row } from './stats.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);

const packages = {
  node: {
    handler: 'index.handler',
    files: {
      'index.js': "const lib = require('./lib'); const dep = require('dep'); exports.handler = async (e) => ({ e, v: lib.v + dep.v });",
      'lib.js': 'exports.v = 1;',
      'node_modules/dep/index.js': 'exports.v = 2;',
    },
  },
  python: {
    handler: 'lambda_function.lambda_handler',
    files: {
      'lambda_function.py': 'import dep\nfrom pkg import mod\n\ndef lambda_handler(event, context):\n    return {"e": event, "v": dep.V + mod.V}\n',
      'dep.py': 'V = 2\n',
      'pkg/__init__.py': '',
      'pkg/mod.py': 'V = 1\n',
    },
  },
} as const;

async function packageImage(dir: string, files: Readonly<Record<string, string>>): Promise<string> {
  const root = join(dir, 'tree');
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const image = join(dir, 'package.ext4');
  await run('mkfs.ext4', ['-q', '-F', '-d', root, '-O', '^has_journal', image, '8M']);
  truncateSync(image, taskDiskBytes);
  return image;
}

async function main(): Promise<void> {
  const { driver, runRoot } = await benchDriver();
  try {
    for (const runtime of ['node', 'python'] as const) {
      const spec = { runtime, vcpu: 1, memoryMb: 256, network: 'none' as const };
      const { handler, files } = packages[runtime];
      const dir = mkdtempSync(join(runRoot, `${runtime}-`));
      const image = await packageImage(dir, files);
      const pool = new VmPool(driver, { snapshotDir: join(runRoot, 'pool'), warm: [{ spec, size: 1 }] });
      pool.start();
      const attach: number[] = [];
      const firstLoad: number[] = [];
      const reload: number[] = [];
      const firstInvoke: number[] = [];
      try {
        for (let i = 0; i < runs; i++) {
          await pool.settled();
          const { vm, source } = await pool.take(spec);
          if (source !== 'warm') throw new Error(`expected a warm VM, got one by ${source}`);
          try {
            let start = performance.now();
            await vm.attachTask(image);
            attach.push(performance.now() - start);
            const load = (version: number) => vm.channel.request('load', { code: '', handler, env: {}, version, package: true }, 60_000);
            start = performance.now();
            await load(1);
            firstLoad.push(performance.now() - start);
            start = performance.now();
            await vm.channel.request('invoke', { request_id: 'b', event: {}, timeout_ms: 5000 });
            firstInvoke.push(performance.now() - start);
            start = performance.now();
            await load(2);
            reload.push(performance.now() - start);
          } finally {
            await vm.stop();
          }
        }
      } finally {
        await pool.close();
      }
      row(`[${runtime}] attachTask (QMP: blockdev-add, reopen, del) p50 of ${runs}`, ms(percentile(attach, 50)));
      row(`[${runtime}] first package load (mount + import) p50`, ms(percentile(firstLoad, 50)));
      row(`[${runtime}] second package load (import only) p50`, ms(percentile(reload, 50)));
      row(`[${runtime}] first invoke after the load p50`, ms(percentile(firstInvoke, 50)));
    }
  } finally {
    rmSync(runRoot, { recursive: true, force: true });
  }
}

await main();

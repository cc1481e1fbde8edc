// `fnvm serve` and `fnvm images build`: the server side, configured by the environment (README), as before.
import type { Command } from 'commander';
import { startServer } from '../app.js';
import { configFromEnv } from '../config.js';
import { ensureImages } from '../images/build.js';

const log = (message: string) => process.stderr.write(`[fnvm] ${message}\n`);

export function serverCommands(program: Command): void {
  program
    .command('serve')
    .description('run the fnvm server (settings from FNVM_* environment variables: see README)')
    .action(serve);

  program
    .command('images')
    .description('guest images')
    .command('build')
    .description('build the guest images (kernel, initramfs, rootfs) if missing; prints them as JSON')
    .action(async () => {
      const images = await ensureImages(log);
      process.stdout.write(JSON.stringify(images, null, 2) + '\n');
    });
}

async function serve(): Promise<void> {
  const server = await startServer(configFromEnv(), log);
  log(`listening on ${server.url}`);
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      log(`${signal}: shutting down (finishing in-flight requests, stopping VMs)`);
      server.close().then(resolve, (error: unknown) => {
        log(`shutdown error: ${error instanceof Error ? error.message : String(error)}`);
        resolve();
      });
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}

/** Server failures keep the server's log format: the stack, prefixed. */
export function logServerError(error: unknown): void {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
}

#!/usr/bin/env node
// fnvm command line: `fnvm images build`, `fnvm serve`.
import { startServer } from './app.js';
import { configFromEnv } from './config.js';
import { ensureImages } from './images/build.js';

const log = (message: string) => process.stderr.write(`[fnvm] ${message}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, sub] = argv;
  if (command === 'images' && sub === 'build') {
    const images = await ensureImages(log);
    process.stdout.write(JSON.stringify(images, null, 2) + '\n');
    return 0;
  }
  if (command === 'serve') {
    const server = await startServer(configFromEnv(), log);
    log(`listening on ${server.url}`);
    await new Promise<void>((resolve) => {
      const shutdown = (signal: string) => {
        log(`${signal}: shutting down (finishing in-flight requests, stopping VMs)`);
        server.close().then(resolve, (error: unknown) => {
          log(`shutdown error: ${(error as Error).message}`);
          resolve();
        });
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    });
    return 0;
  }
  process.stderr.write('usage: fnvm images build | fnvm serve\n');
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);

// Where the repository's own files are, whether running from src (tsx) or dist (tsc output).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the fnvm repository root');
    dir = parent;
  }
  return dir;
}

export const repoRoot = findRepoRoot();
export const guestDir = join(repoRoot, 'guest');
export const agentPaths = {
  node: join(guestDir, 'node', 'agent.mjs'),
  python: join(guestDir, 'python', 'agent.py'),
} as const;

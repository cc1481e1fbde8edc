// What `fnvm deploy PATH` sends: a single file as `code`, a directory as a zipped `package`, with the runtime,
// handler and name inferred the way the README describes unless given.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { CliError } from './errors.js';
import { zipDirectory, type PackageZip } from './zip.js';

export type Runtime = 'node' | 'python';

export type Source =
  | { kind: 'code'; path: string; runtime: Runtime; code: string; handler: string | undefined }
  | { kind: 'package'; path: string; runtime: Runtime; pkg: PackageZip; handler: string };

const fileRuntimes = new Map<string, Runtime>([['.js', 'node'], ['.mjs', 'node'], ['.cjs', 'node'], ['.py', 'python']]);

export function parseRuntime(value: string): Runtime {
  if (value === 'node' || value === 'python') return value;
  throw new CliError(`--runtime must be "node" or "python", not "${value}"`);
}

/** The function's default name: the file's name without its extension, or the directory's name. */
export function defaultName(path: string): string {
  const full = resolve(path);
  return basename(full, statSync(full).isDirectory() ? '' : extname(full));
}

export async function readSource(path: string, runtime: Runtime | undefined, handler: string | undefined): Promise<Source> {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new CliError(`${path}: no such file or directory`);
  }
  if (!isDir) {
    const inferred = fileRuntimes.get(extname(path).toLowerCase());
    const chosen = runtime ?? inferred;
    if (!chosen) throw new CliError(`${path}: cannot tell the runtime from its extension (.js, .mjs, .cjs or .py): give --runtime`);
    return { kind: 'code', path, runtime: chosen, code: readFileSync(path, 'utf8'), handler };
  }
  const chosen = runtime ?? dirRuntime(path);
  return { kind: 'package', path, runtime: chosen, handler: handler ?? dirHandler(path, chosen), pkg: await zipDirectory(path) };
}

/** package.json: node; requirements.txt or a .py file: python; else a .js file: node. */
function dirRuntime(dir: string): Runtime {
  if (existsSync(join(dir, 'package.json'))) return 'node';
  if (existsSync(join(dir, 'requirements.txt'))) return 'python';
  const names = topLevelFiles(dir);
  if (names.some((name) => extname(name) === '.py')) return 'python';
  if (names.some((name) => fileRuntimes.get(extname(name)) === 'node')) return 'node';
  throw new CliError(`${dir}: cannot tell the runtime (no package.json, requirements.txt, .py or .js file): give --runtime`);
}

/** Lambda's usual handlers: index.handler (Node), lambda_function.lambda_handler (Python), if that file is there. */
function dirHandler(dir: string, runtime: Runtime): string {
  if (runtime === 'python') {
    if (existsSync(join(dir, 'lambda_function.py'))) return 'lambda_function.lambda_handler';
    throw new CliError(`${dir}: no lambda_function.py: give --handler, such as "app.handler" for handler() in app.py`);
  }
  if (['index.js', 'index.mjs', 'index.cjs'].some((name) => existsSync(join(dir, name)))) return 'index.handler';
  throw new CliError(`${dir}: no index.js: give --handler, such as "src/app.handler" for handler() exported by src/app.js`);
}

function topLevelFiles(dir: string): string[] {
  return readdirSync(dir);
}

// `fnvm deploy PATH`: create the function, or update it if the name exists, then follow its deployment.
import type { Command } from 'commander';
import { Client } from './client.js';
import { ApiError, CliError } from './errors.js';
import { followDeployment } from './follow.js';
import { functionSummary, type FunctionSummary } from './items.js';
import { asObject, objectAt, stringAt } from './json.js';
import { formatBytes, note, printJson, printLine, uploadProgress } from './output.js';
import { defaultName, parseRuntime, readSource, type Source } from './source.js';
import { intOption, keyValue } from './options.js';

interface DeployOptions {
  name?: string;
  runtime?: string;
  handler?: string;
  memory?: number;
  timeout?: number;
  env?: Record<string, string>;
  wait: number;
  json?: boolean;
}

/** Bodies above this show a progress line while they upload (on a terminal). */
const progressFromBytes = 4 * 1024 * 1024;

export function deployCommand(program: Command): void {
  program
    .command('deploy')
    .description('deploy a file (single-file code) or a directory (zipped package); creates the function or updates it')
    .argument('<path>', 'a .js/.mjs/.cjs/.py file, or a directory')
    .option('--name <name>', 'function name (default: the file or directory name)')
    .option('--runtime <runtime>', 'node or python (default: inferred)')
    .option('--handler <handler>', 'handler (directories: index.handler for node, lambda_function.lambda_handler for python)')
    .option('--memory <mb>', 'memory in MiB', intOption('--memory'))
    .option('--timeout <seconds>', 'invocation timeout in seconds', intOption('--timeout'))
    .option('--env <key=value>', 'environment variable (repeatable); replaces all of them on update', keyValue)
    .option('--wait <seconds>', 'how long to wait for the deployment', intOption('--wait'), 300)
    .option('--json', 'print the deployed item as JSON on stdout')
    .action(async (path: string, options: DeployOptions) => {
      process.exitCode = await deploy(Client.fromEnv(), path, options);
    });
}

async function deploy(client: Client, path: string, options: DeployOptions): Promise<number> {
  const runtime = options.runtime === undefined ? undefined : parseRuntime(options.runtime);
  const source = await readSource(path, runtime, options.handler);
  const name = options.name ?? defaultName(path);
  const body = definition(name, source, options);
  if (source.kind === 'package') {
    note(`packaged ${source.pkg.files.length} files: ${formatBytes(source.pkg.zip.length)} zipped, sha256 ${source.pkg.sha256}`);
  }
  const progress = uploadProgress();
  const size = Buffer.byteLength(JSON.stringify(body));
  const onProgress = size > progressFromBytes ? progress.update : undefined;

  const existing = await find(client, name);
  let started: FunctionSummary;
  if (existing) {
    note(`updating ${name} (version ${existing.version})`);
    started = await update(client, existing.id, body, onProgress);
  } else {
    note(`creating ${name}`);
    try {
      const created = await client.request('POST', '/v1/functions', { json: body, onProgress });
      started = await get(client, stringAt(asObject(created, 'the answer'), 'id'));
    } catch (error) {
      // Created by someone else meanwhile: update it instead.
      if (!(error instanceof ApiError && error.status === 409)) throw error;
      started = await update(client, (await get(client, name)).id, body, onProgress);
    }
  }
  if (source.kind === 'package' || onProgress) progress.done(size);

  const item = await followDeployment(client, started.id, {
    version: started.version,
    timeoutMs: options.wait * 1000,
    onChange: (change) => note(`${change.name}: ${change.state}${change.error ? ` (${change.error})` : ''}`),
  });
  if (options.json) printJson(item.raw);
  if (item.state === 'error') throw new CliError(`deployment of ${name} failed: ${item.error ?? 'unknown error'}`);
  if (source.kind === 'package' && item.package && item.package.sha256 !== source.pkg.sha256) {
    throw new CliError(`the server holds package ${item.package.sha256}, not the ${source.pkg.sha256} sent`);
  }
  if (!options.json) printLine(`${item.name} ready (version ${item.version}, ${item.runtime}, id ${item.id})`);
  return 0;
}

function definition(name: string, source: Source, options: DeployOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { name, runtime: source.runtime };
  if (source.kind === 'code') body.code = source.code;
  else body.package = source.pkg.zip.toString('base64');
  if (source.handler !== undefined) body.handler = source.handler;
  if (options.memory !== undefined) body.memory_mb = options.memory;
  if (options.timeout !== undefined) body.timeout_seconds = options.timeout;
  if (options.env) body.env_vars = options.env;
  return body;
}

async function update(client: Client, id: string, body: Record<string, unknown>, onProgress: ((sent: number, total: number) => void) | undefined): Promise<FunctionSummary> {
  try {
    const answer = await client.request('PUT', `/v1/functions/${encodeURIComponent(id)}`, { json: body, onProgress });
    return functionSummary(objectAt(answer, 'item'));
  } catch (error) {
    // A 400 here is the code not loading in the running VM (nothing changed): the runtime's error, as a deploy failure.
    if (error instanceof ApiError && error.status === 400) throw new CliError(`deployment of ${String(body.name)} failed: ${error.message}`);
    throw error;
  }
}

async function find(client: Client, name: string): Promise<FunctionSummary | null> {
  try {
    return await get(client, name);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export async function get(client: Client, idOrName: string): Promise<FunctionSummary> {
  return functionSummary(objectAt(await client.request('GET', `/v1/functions/${encodeURIComponent(idOrName)}`), 'item'));
}

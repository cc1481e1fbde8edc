// `fnvm invoke NAME`: the response on stdout, the invocation's logs on stderr; non-zero unless it succeeded.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Client } from './client.js';
import { CliError } from './errors.js';
import { errorInfo } from './items.js';
import { asObject, stringAt, stringsAt } from './json.js';
import { note, printJson } from './output.js';

interface InvokeOptions {
  event?: string;
  json?: boolean;
  async?: boolean;
}

export function invokeCommand(program: Command): void {
  program
    .command('invoke')
    .description('invoke a function: its response on stdout, its logs on stderr')
    .argument('<name>', 'function name or id')
    .option('--event <json>', 'the event: JSON text, or @file to read it from a file (@- for stdin)', '{}')
    .option('--json', 'print the whole answer (request_id, status, duration_ms, response, logs, error...) as JSON')
    .option('--async', 'queue the event instead (Prefer: respond-async): prints its request_id once it is stored')
    .action(async (name: string, options: InvokeOptions) => {
      process.exitCode = await invoke(Client.fromEnv(), name, options);
    });
}

async function invoke(client: Client, name: string, options: InvokeOptions): Promise<number> {
  const event = parseEvent(options.event ?? '{}');
  if (options.async) {
    const queued = asObject(await client.request('POST', `/v1/functions/${encodeURIComponent(name)}/invoke`, { json: { event }, headers: { prefer: 'respond-async' } }), 'the answer');
    if (options.json) printJson(queued);
    else process.stdout.write(`${stringAt(queued, 'request_id')}\n`);
    return 0;
  }
  const answer = asObject(await client.request('POST', `/v1/functions/${encodeURIComponent(name)}/invoke`, { json: { event } }), 'the answer');
  const status = stringAt(answer, 'status');
  for (const line of stringsAt(answer, 'logs')) note(line);
  if (options.json) printJson(answer);
  else if (status === 'success') printJson(answer.response);
  if (status === 'success') return 0;
  const error = errorInfo(answer.error);
  const what = status === 'timeout' ? 'timed out' : 'failed';
  note(`fnvm: invocation ${what}: ${error ? `${error.type}: ${error.message}` : status}`);
  return 1;
}

function parseEvent(text: string): unknown {
  let json = text;
  if (text.startsWith('@')) {
    const path = text.slice(1);
    try {
      json = readFileSync(path === '-' ? 0 : path, 'utf8');
    } catch (error) {
      throw new CliError(`--event ${text}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  try {
    return JSON.parse(json);
  } catch (error) {
    throw new CliError(`--event is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

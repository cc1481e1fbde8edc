// `fnvm logs NAME`: the recent invocations, oldest first, each with its log lines (and error); with --follow,
// then every new one as it is recorded (GET .../logs?follow=true), until the function is deleted or Ctrl-C.
import type { Command } from 'commander';
import { Client } from './client.js';
import { CliError } from './errors.js';
import { invocationSummary, type InvocationSummary } from './items.js';
import { arrayAt, asObject, stringAt } from './json.js';
import { note, printJson, printLine } from './output.js';
import { intOption } from './options.js';
import { serverEvents } from './sse.js';

interface LogsOptions {
  limit: number;
  follow?: boolean;
  json?: boolean;
}

const reconnectDelayMs = 500;
/** Records remembered while following, so one sent again after a reconnection is printed once. */
const rememberedIds = 2000;

export function logsCommand(program: Command): void {
  program
    .command('logs')
    .description('recent invocations of a function: time, request id, status, duration, then their log lines')
    .argument('<name>', 'function name or id')
    .option('--limit <n>', 'how many invocations (1-1000)', intOption('--limit'), 20)
    .option('-f, --follow', 'then print each new invocation as it is recorded, until the function is deleted (Ctrl-C stops)')
    .option('--json', 'print the API answer ({items, total}, newest first) as JSON; with --follow, one record per line')
    .action(async (name: string, options: LogsOptions) => {
      const client = Client.fromEnv();
      if (options.follow) return follow(client, name, options);
      const answer = await client.request('GET', `/v1/functions/${encodeURIComponent(name)}/logs?limit=${options.limit}`);
      if (options.json) {
        printJson(answer);
        return;
      }
      const records = arrayAt(answer, 'items').map((item) => invocationSummary(asObject(item, 'an invocation')));
      for (const record of records.reverse()) printRecord(record);
    });
}

function printRecord(record: InvocationSummary): void {
  printLine(`${record.invoked_at}  ${record.request_id}  ${record.status}  ${record.duration_ms} ms`);
  for (const line of record.logs) printLine(`    ${line}`);
  if (record.error) printLine(`    ${record.error.type}: ${record.error.message}`);
}

/** Prints the backlog, then new records; a dropped stream is reopened with a full backlog, printed ones skipped. */
async function follow(client: Client, name: string, options: LogsOptions): Promise<void> {
  const printed = new Set<string>();
  let backlog = options.limit;
  for (;;) {
    const response = await client.open(`/v1/functions/${encodeURIComponent(name)}/logs?follow=true&limit=${backlog}`, new AbortController().signal);
    if (!response.body) throw new CliError('the log stream has no body');
    for await (const { event, data } of serverEvents(response.body)) {
      if (event === 'deleted') {
        note(`function ${name} was deleted`);
        return;
      }
      if (event !== 'invocation') continue;
      let raw: unknown;
      try {
        raw = JSON.parse(data);
      } catch (error) {
        throw new CliError(`unexpected event from the server: ${error instanceof Error ? error.message : String(error)}`);
      }
      const record = asObject(raw, 'an invocation');
      const id = stringAt(record, 'id');
      if (printed.has(id)) continue;
      printed.add(id);
      if (printed.size > rememberedIds) printed.delete(printed.values().next().value ?? id);
      if (options.json) printLine(JSON.stringify(record));
      else printRecord(invocationSummary(record));
    }
    note('the log stream closed; reconnecting');
    backlog = 1000;
    await new Promise((resolve) => setTimeout(resolve, reconnectDelayMs));
  }
}

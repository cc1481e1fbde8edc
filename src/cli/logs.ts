// `fnvm logs NAME`: the recent invocations, oldest first, each with its log lines (and error).
import type { Command } from 'commander';
import { Client } from './client.js';
import { invocationSummary } from './items.js';
import { arrayAt, asObject } from './json.js';
import { printJson, printLine } from './output.js';
import { intOption } from './options.js';

interface LogsOptions {
  limit: number;
  json?: boolean;
}

export function logsCommand(program: Command): void {
  program
    .command('logs')
    .description('recent invocations of a function: time, request id, status, duration, then their log lines')
    .argument('<name>', 'function name or id')
    .option('--limit <n>', 'how many invocations (1-1000)', intOption('--limit'), 20)
    .option('--json', 'print the API answer ({items, total}, newest first) as JSON')
    .action(async (name: string, options: LogsOptions) => {
      const answer = await Client.fromEnv().request('GET', `/v1/functions/${encodeURIComponent(name)}/logs?limit=${options.limit}`);
      if (options.json) {
        printJson(answer);
        return;
      }
      const records = arrayAt(answer, 'items').map((item) => invocationSummary(asObject(item, 'an invocation')));
      for (const record of records.reverse()) {
        printLine(`${record.invoked_at}  ${record.request_id}  ${record.status}  ${record.duration_ms} ms`);
        for (const line of record.logs) printLine(`    ${line}`);
        if (record.error) printLine(`    ${record.error.type}: ${record.error.message}`);
      }
    });
}

// `fnvm ls`, `fnvm get NAME`, `fnvm rm NAME`.
import type { Command } from 'commander';
import { Client } from './client.js';
import { functionSummary } from './items.js';
import { arrayAt, asObject, objectAt } from './json.js';
import { printJson, printLine, table } from './output.js';

interface JsonOption {
  json?: boolean;
}

export function functionCommands(program: Command): void {
  program
    .command('ls')
    .description('list functions: name, runtime, state, version, memory, updated')
    .option('--json', 'print the items as a JSON array')
    .action(async (options: JsonOption) => {
      const items = arrayAt(await Client.fromEnv().request('GET', '/v1/functions'), 'items').map((item) => functionSummary(asObject(item, 'an item')));
      if (options.json) {
        printJson(items.map((item) => item.raw));
        return;
      }
      const rows = items.map((f) => [f.name, f.runtime, f.state, String(f.version), `${f.memory_mb} MiB`, f.updated_at]);
      printLine(table(['NAME', 'RUNTIME', 'STATE', 'VERSION', 'MEMORY', 'UPDATED'], rows));
    });

  program
    .command('get')
    .description('show a function (its item, as JSON)')
    .argument('<name>', 'function name or id')
    .option('--json', 'the same: the item is always JSON')
    .action(async (name: string) => {
      printJson(objectAt(await Client.fromEnv().request('GET', `/v1/functions/${encodeURIComponent(name)}`), 'item'));
    });

  program
    .command('rm')
    .description('delete a function and its VM')
    .argument('<name>', 'function name or id')
    .option('--json', 'print {"deleted": id, "name": name} as JSON')
    .action(async (name: string, options: JsonOption) => {
      const client = Client.fromEnv();
      const item = functionSummary(objectAt(await client.request('GET', `/v1/functions/${encodeURIComponent(name)}`), 'item'));
      await client.request('DELETE', `/v1/functions/${encodeURIComponent(item.id)}`);
      if (options.json) printJson({ deleted: item.id, name: item.name });
      else printLine(`deleted ${item.name}`);
    });
}

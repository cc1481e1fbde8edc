// The `fnvm` command line, on commander: the server commands and the API client commands.
import { Command } from 'commander';
import { deployCommand } from './deploy.js';
import { functionCommands } from './functions.js';
import { invokeCommand } from './invoke.js';
import { logsCommand } from './logs.js';
import { serverCommands } from './server.js';

export function buildProgram(): Command {
  const program = new Command('fnvm')
    .description('self-hosted serverless functions, each in its own microVM\n\n' +
      'Client commands talk to FNVM_URL (default http://127.0.0.1:18080), with FNVM_API_TOKEN as the bearer token if set.')
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: false });
  serverCommands(program);
  deployCommand(program);
  invokeCommand(program);
  logsCommand(program);
  functionCommands(program);
  return program;
}

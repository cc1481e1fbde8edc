#!/usr/bin/env node
// fnvm command line: `fnvm serve`, `fnvm images build`, and the API client commands (src/cli/).
import { buildProgram } from './cli/program.js';
import { CliError } from './cli/errors.js';
import { logServerError } from './cli/server.js';

buildProgram().parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof CliError) process.stderr.write(`fnvm: ${error.message}\n`);
  else logServerError(error);
  process.exitCode = 1;
});

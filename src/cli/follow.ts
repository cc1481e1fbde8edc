// Following a deployment live: the function's event stream (GET /v1/functions/{id}/events), which starts with
// its current state, until the version deployed is ready or in error. A dropped stream is reopened.
import type { Client } from './client.js';
import { CliError } from './errors.js';
import { functionSummary, type FunctionSummary } from './items.js';
import { objectAt } from './json.js';
import { serverEvents } from './sse.js';

export interface FollowOptions {
  /** The version the deploy made: earlier versions' states are not its outcome. */
  version: number;
  timeoutMs: number;
  onChange: (item: FunctionSummary) => void;
}

const reconnectDelayMs = 500;

/** The function once `version` (or a later one) is ready or in error. */
export async function followDeployment(client: Client, id: string, options: FollowOptions): Promise<FunctionSummary> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  let last: FunctionSummary | undefined;
  try {
    for (;;) {
      const response = await client.open(`/v1/functions/${encodeURIComponent(id)}/events`, controller.signal);
      if (!response.body) throw new CliError('the event stream has no body');
      for await (const { event, data } of serverEvents(response.body)) {
        if (event === 'deleted') throw new CliError('the function was deleted while it was deploying');
        if (event !== 'function') continue;
        const parsed: unknown = JSON.parse(data);
        const item = functionSummary(objectAt(parsed, 'item'));
        if (!last || last.state !== item.state || last.version !== item.version || last.error !== item.error) options.onChange(item);
        last = item;
        if (item.version >= options.version && (item.state === 'ready' || item.state === 'error')) return item;
      }
      await new Promise((resolve) => setTimeout(resolve, reconnectDelayMs));
    }
  } catch (error) {
    if (timedOut) throw new CliError(`the deployment did not finish within ${options.timeoutMs / 1000} s (state: ${last?.state ?? 'unknown'})`);
    if (error instanceof SyntaxError) throw new CliError(`unexpected event from the server: ${error.message}`);
    throw error;
  } finally {
    clearTimeout(timer);
    controller.abort(); // closes the stream: it would keep the process alive
  }
}

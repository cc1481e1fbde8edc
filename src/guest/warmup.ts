// A trivial function per runtime, used to warm a fresh VM (JIT, first-touch page faults) before real code.
import type { GuestChannel } from './channel.js';
import type { Runtime } from './protocol.js';

export const identityHandler: Record<Runtime, string> = {
  node: 'exports.handler = (event) => event',
  python: 'def handler(event):\n    return event',
};

/** Loads the identity handler as version 0 and invokes it `rounds` times. */
export async function warmUp(channel: GuestChannel, runtime: Runtime, rounds = 30): Promise<void> {
  await channel.request('load', { code: identityHandler[runtime], handler: 'handler', env: {}, version: 0 }, 30_000);
  for (let i = 0; i < rounds; i++) {
    await channel.request('invoke', { request_id: 'warmup', event: { i }, timeout_ms: 5000 }, 30_000);
  }
}

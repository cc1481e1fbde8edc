// The fleet's extra hop through real hosts: two `fnvm serve` processes on one PostgreSQL (a temporary server),
// a function on host A; requests straight to A vs through B, which finds the owner (remembered, src/fleet/owners.ts)
// and forwards the request. The client (its own process, keep-alive) sends to A and to B in turn, request by
// request, so the machine's drift weighs on both alike: warm invokes, and reads of the function (no VM in the way,
// so the hop is all that differs).
// Usage: node dist/bench/fleet.js [invokes per path, default 2000]
import { TestFleet } from '../test/support/fleet.js';
import { printHop } from './stats.js';

const count = Number(process.argv[2] ?? 2000);
const fleet = new TestFleet('bench-fleet-secret-0123456789abcdef');
try {
  await fleet.open();
  await fleet.start('a');
  await fleet.start('b');
  const created = await fetch(`${fleet.url('a')}/v1/functions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', runtime: 'node', code: 'exports.handler = async (event) => ({ hello: event.name });' }),
  });
  if (created.status !== 200) throw new Error(`create: ${created.status} ${await created.text()}`);
  for (let ready = false; !ready;) {
    const { item } = (await (await fetch(`${fleet.url('a')}/v1/functions/bench`)).json()) as { item: { state: string; host_id: string | null } };
    if (item.state === 'error') throw new Error('the function did not deploy');
    ready = item.state === 'ready' && item.host_id === 'a';
    if (!ready) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const measure = (label: string, path: string, body: string) => printHop(label, fleet.url('a') + path, fleet.url('b') + path, body, count);
  await measure('invoke', '/v1/functions/bench/invoke', JSON.stringify({ event: { name: 'World' } }));
  await measure('read', '/v1/functions/bench', '');
} finally {
  await fleet.stop();
}

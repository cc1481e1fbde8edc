// The fleet's extra hop through real hosts: two `fnvm serve` processes on one PostgreSQL (a temporary server),
// a function on host A; warm invokes straight to A vs through B, which looks the owner up in the database and
// forwards the request, in alternating halves of one run (the client in its own process, keep-alive).
// Usage: node dist/bench/fleet.js [invokes per path, default 2000]
import { TestFleet } from '../test/support/fleet.js';
import { httpClient, ms, percentile, row } from './stats.js';

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
  const body = JSON.stringify({ event: { name: 'World' } });
  const path = '/v1/functions/bench/invoke';
  const direct: number[] = [];
  const forwarded: number[] = [];
  for (let round = 0; round < 2; round++) {
    direct.push(...(await httpClient(`${fleet.url('a')}${path}`, body, 'latency', count / 2)).samples);
    forwarded.push(...(await httpClient(`${fleet.url('b')}${path}`, body, 'latency', count / 2)).samples);
  }
  row(`invoke on its host p50 / p99 (${direct.length})`, `${ms(percentile(direct, 50))} / ${ms(percentile(direct, 99))}`);
  row(`invoke through another host p50 / p99 (${forwarded.length})`, `${ms(percentile(forwarded, 50))} / ${ms(percentile(forwarded, 99))}`);
  row('extra hop (owner lookup + forward) p50', ms(percentile(forwarded, 50) - percentile(direct, 50)));
} finally {
  await fleet.stop();
}

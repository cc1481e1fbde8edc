// Percentiles, timing helpers and the HTTP client process shared by the benchmarks.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/exec.js';

export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export async function timeEach(count: number, run: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await run(i);
    samples.push(performance.now() - start);
  }
  return samples;
}

export const ms = (value: number) => `${value.toFixed(2)} ms`;

export function row(label: string, value: string): void {
  process.stdout.write(`${label.padEnd(44)} ${value}\n`);
}

/**
 * The extra hop of forwarding: requests straight to `directUrl` and through `forwardedUrl` in turn, request by
 * request (so the machine's drift weighs on both alike), printed as both paths' p50 / p99 and their difference.
 */
export async function printHop(label: string, directUrl: string, forwardedUrl: string, body: string, count: number): Promise<void> {
  const { series } = (await httpClient(`${directUrl},${forwardedUrl}`, body, 'latency', count)) as { series: [number[], number[]] };
  const [direct, forwarded] = series;
  const both = (q: number) => `${ms(percentile(direct, q))} / ${ms(percentile(forwarded, q))}`;
  row(`${label}: direct / forwarded p50 (${direct.length} each)`, both(50));
  row(`${label}: direct / forwarded p99`, both(99));
  row(`${label}: extra hop p50 / p99`, `${ms(percentile(forwarded, 50) - percentile(direct, 50))} / ${ms(percentile(forwarded, 99) - percentile(direct, 99))}`);
}

/**
 * Runs bench/http-client.js in its own process (a client sharing the server's event loop would inflate it):
 * `{samples}` in ms in latency mode (after 300 warm-up requests; `{series}`, one per URL, for comma-separated URLs,
 * sent to in turn), `{ok, failed, seconds}` in throughput mode. An empty body sends GETs.
 */
export async function httpClient(url: string, body: string, mode: 'latency' | 'throughput', amount: number, concurrency = 32): Promise<any> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'http-client.js');
  const stdout = await run(process.execPath, [script, url, body, mode, String(amount), String(concurrency)]);
  return JSON.parse(stdout.toString());
}

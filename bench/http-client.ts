// The benchmark's HTTP client, run as its own process so it does not share the server's event loop.
// Usage: http-client.js URL BODY MODE(latency|throughput) COUNT_OR_SECONDS [CONCURRENCY]; prints JSON.
import { Agent, request } from 'node:http';

const [url, body, mode, amount, concurrency = '32'] = process.argv.slice(2) as [string, string, string, string, string?];
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function post(): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(res.statusCode === 200 && (JSON.parse(text) as { status: string }).status === 'success'));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  if (mode === 'latency') {
    const samples: number[] = [];
    for (let i = 0; i < 300; i++) await post(); // warm-up
    for (let i = 0; i < Number(amount); i++) {
      const start = performance.now();
      await post();
      samples.push(performance.now() - start);
    }
    process.stdout.write(JSON.stringify({ samples }));
  } else {
    let ok = 0;
    let failed = 0;
    const until = performance.now() + Number(amount) * 1000;
    await Promise.all(Array.from({ length: Number(concurrency) }, async () => {
      while (performance.now() < until) (await post()) ? ok++ : failed++;
    }));
    process.stdout.write(JSON.stringify({ ok, failed, seconds: Number(amount) }));
  }
  agent.destroy();
}

await main();

// The benchmark's HTTP client, run as its own process so it does not share the server's event loop.
// Usage: http-client.js URL BODY MODE(latency|throughput) COUNT_OR_SECONDS [CONCURRENCY]; prints JSON.
// URL may be several, comma-separated: latency mode then sends to each in turn, request by request, so that the
// machine's drift weighs on all of them alike, and prints one series per URL. An empty BODY sends GETs.
import { Agent, request } from 'node:http';

const [urlList, body, mode, amount, concurrency = '32'] = process.argv.slice(2) as [string, string, string, string, string?];
const urls = urlList.split(',');
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

function post(url = urls[0] ?? ''): Promise<boolean> {
  const headers = body === '' ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  return new Promise((resolve, reject) => {
    const req = request(url, { method: body === '' ? 'GET' : 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(res.statusCode === 200 && (body === '' || (JSON.parse(text) as { status: string }).status === 'success')));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main(): Promise<void> {
  if (mode === 'latency') {
    const series: number[][] = urls.map(() => []);
    for (let i = 0; i < 300; i++) for (const url of urls) await post(url); // warm-up
    for (let i = 0; i < Number(amount); i++) {
      for (const [n, url] of urls.entries()) {
        const start = performance.now();
        await post(url);
        series[n]?.push(performance.now() - start);
      }
    }
    process.stdout.write(JSON.stringify({ samples: series[0], series }));
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

// The Lambda benchmark's client, in its own process (a client sharing the server's event loop would inflate it).
// Usage: lambda-client.js BASE_URL FUNCTION MODE(sdk|v1) COUNT [SECRET]; prints {"samples": [ms...]}.
// `sdk` invokes through @aws-sdk/client-lambda (signed with SECRET, or any secret); `v1` POSTs /v1 invoke.
import { Agent, request } from 'node:http';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const [base, name, mode, amount, secret = 'unchecked'] = process.argv.slice(2) as [string, string, string, string, string?];
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
const payload = JSON.stringify({ n: 1 });

function v1(token: string | undefined): () => Promise<void> {
  const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) };
  if (token) headers.authorization = `Bearer ${token}`;
  return () => new Promise((resolve, reject) => {
    const req = request(`${base}/v1/functions/${name}/invoke`, { method: 'POST', agent, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => ((JSON.parse(text) as { status?: string }).status === 'success' ? resolve() : reject(new Error(text))));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

function sdk(): { invoke: () => Promise<void>; close: () => void } {
  const client = new LambdaClient({
    endpoint: base,
    region: 'us-east-1',
    credentials: { accessKeyId: process.env.FNVM_ACCESS_KEY_ID ?? 'fnvm', secretAccessKey: secret },
    maxAttempts: 1,
    requestHandler: { httpAgent: agent }, // the same keep-alive sockets as the /v1 client
  });
  const body = Buffer.from(payload);
  return {
    invoke: async () => {
      const answer = await client.send(new InvokeCommand({ FunctionName: name, Payload: body }));
      if (answer.FunctionError !== undefined) throw new Error(Buffer.from(answer.Payload ?? new Uint8Array()).toString());
    },
    close: () => client.destroy(),
  };
}

async function main(): Promise<void> {
  const client = mode === 'sdk' ? sdk() : { invoke: v1(secret === 'unchecked' ? undefined : secret), close: () => {} };
  for (let i = 0; i < 200; i++) await client.invoke(); // warm-up (bench/lambda.ts: warmUp): JIT, sockets, the function's VM
  const samples: number[] = [];
  for (let i = 0; i < Number(amount); i++) {
    const start = performance.now();
    await client.invoke();
    samples.push(performance.now() - start);
  }
  client.close();
  agent.destroy();
  process.stdout.write(JSON.stringify({ samples }));
}

await main();

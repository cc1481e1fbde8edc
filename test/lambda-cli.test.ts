// The Lambda API driven by Debian's AWS CLI v2 (/usr/bin/aws, package awscli; the pip CLI v1 may come first on
// PATH, so the path is explicit): create-function from fileb://, wait function-active-v2, invoke with
// --log-type Tail, list-functions, update-function-code and the updated waiter, delete-function, every request
// SigV4-signed with the server's API token as the secret key; a wrong secret is refused.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from './support/server.js';
import { zipOf } from './support/zips.js';

const aws = '/usr/bin/aws';

interface AwsRun {
  code: number;
  stdout: string;
  stderr: string;
}

describe('Lambda API with the AWS CLI v2', () => {
  const token = 'cli-secret-token';
  let fnvm: TestServer;
  let dir: string;

  /** The CLI with a hermetic environment: no config files, no instance metadata lookups, no pager. */
  function run(args: string[], secret = token): Promise<AwsRun> {
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      AWS_ACCESS_KEY_ID: 'fnvm',
      AWS_SECRET_ACCESS_KEY: secret,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_PAGER: '',
      AWS_MAX_ATTEMPTS: '1',
    };
    return new Promise((resolve) => {
      execFile(aws, [...args, '--endpoint-url', fnvm.url, '--output', 'json'], { env, timeout: 240_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      });
    });
  }

  async function ok(args: string[]): Promise<unknown> {
    const result = await run(args);
    assert.equal(result.code, 0, `aws ${args.join(' ')}: ${result.stderr}`);
    return result.stdout.trim() === '' ? undefined : JSON.parse(result.stdout);
  }

  before(async () => {
    // Loud, not skipped: the CI script installs the package; a machine without it cannot run this test.
    assert.ok(existsSync(aws), `${aws} is missing: apt-get install awscli (Debian's AWS CLI v2)`);
    dir = mkdtempSync(join(tmpdir(), 'fnvm-awscli-'));
    fnvm = await startTestServer({ apiToken: token }, { sendToken: true });
  });
  after(async () => {
    await fnvm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('create from fileb://, wait active, invoke with Tail logs, list, update, delete', async () => {
    const version = await run(['--version']);
    assert.match(version.stdout, /^aws-cli\/2\./, version.stdout);
    const zipPath = join(dir, 'function.zip');
    writeFileSync(zipPath, await zipOf({ 'lambda_function.py': 'def lambda_handler(event, context):\n    print("seen", event["n"])\n    return {"doubled": event["n"] * 2}\n' }));
    const created = await ok([
      'lambda', 'create-function', '--function-name', 'cli-fn', '--runtime', 'python3.12', '--handler', 'lambda_function.lambda_handler',
      '--role', 'arn:aws:iam::000000000000:role/r', '--zip-file', `fileb://${zipPath}`, '--timeout', '10',
    ]);
    assert.ok(created && typeof created === 'object' && 'State' in created);
    assert.equal(created.State, 'Pending');
    await ok(['lambda', 'wait', 'function-active-v2', '--function-name', 'cli-fn']);

    const outfile = join(dir, 'out.json');
    const invoked = await ok([
      'lambda', 'invoke', '--function-name', 'cli-fn', '--cli-binary-format', 'raw-in-base64-out', '--payload', '{"n": 21}',
      '--log-type', 'Tail', '--cli-read-timeout', '0', outfile,
    ]);
    assert.ok(invoked && typeof invoked === 'object' && 'LogResult' in invoked && typeof invoked.LogResult === 'string');
    assert.ok('StatusCode' in invoked);
    assert.equal(invoked.StatusCode, 200);
    assert.deepEqual(JSON.parse(readFileSync(outfile, 'utf8')), { doubled: 42 });
    const log = Buffer.from(invoked.LogResult, 'base64').toString('utf8');
    assert.match(log, /^START RequestId: [0-9a-f-]{36} Version: \$LATEST\nseen 21\nEND RequestId/);

    const listed = await ok(['lambda', 'list-functions']);
    assert.ok(listed && typeof listed === 'object' && 'Functions' in listed && Array.isArray(listed.Functions));
    assert.deepEqual(listed.Functions.map((f: { FunctionName: string; Runtime: string }) => [f.FunctionName, f.Runtime]), [['cli-fn', 'python3.12']]);

    writeFileSync(zipPath, await zipOf({ 'lambda_function.py': 'def lambda_handler(event, context):\n    return {"tripled": event["n"] * 3}\n' }));
    await ok(['lambda', 'update-function-code', '--function-name', 'cli-fn', '--zip-file', `fileb://${zipPath}`]);
    await ok(['lambda', 'wait', 'function-updated-v2', '--function-name', 'cli-fn']);
    await ok(['lambda', 'invoke', '--function-name', 'cli-fn', '--cli-binary-format', 'raw-in-base64-out', '--payload', '{"n": 5}', outfile]);
    assert.deepEqual(JSON.parse(readFileSync(outfile, 'utf8')), { tripled: 15 });

    const refused = await run(['lambda', 'delete-function', '--function-name', 'cli-fn'], 'not-the-token');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /InvalidSignatureException/);
    assert.equal((await fnvm.api('/v1/functions/cli-fn')).status, 200);

    await ok(['lambda', 'delete-function', '--function-name', 'cli-fn']);
    assert.equal((await fnvm.api('/v1/functions/cli-fn')).status, 404);
    const missing = await run(['lambda', 'get-function', '--function-name', 'cli-fn']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /ResourceNotFoundException/);
  });
});

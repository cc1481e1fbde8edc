// The console's asynchronous invocations end to end: headless Chromium against a real server with real VMs.
// An event queued from the invoke panel runs (its attempt shows in the history); failing events land in the
// dead-letter list with their error, live; a row's redrive after a fix runs it again and empties the list; discard
// deletes one; "Redrive all" sends back every one. Every figure is checked against the API.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { screenshots, startConsoleTest, stopConsoleTest } from './support/browser.js';
import { deployReady, type TestServer } from './support/server.js';

const uiMs = 20_000;
const code = `async function handler(event) {
  if (event.fail) throw new Error('failing on purpose: ' + event.n);
  return { ok: true, n: event.n };
}`;

let fnvm: TestServer;
let browser: Browser;
let page: Page;
let pageErrors: Error[] = [];

before(async () => {
  ({ fnvm, browser, page, pageErrors } = await startConsoleTest(uiMs, { asyncRetryDelayMs: 100 }));
});

after(() => stopConsoleTest({ fnvm, browser }));

const enqueue = (event: unknown) => fnvm.api('/v1/functions/queued/invoke', { method: 'POST', body: { event }, headers: { prefer: 'respond-async' } });
const deadLetters = async () => (await fnvm.api('/v1/functions/queued/dead-letters')).body as { items: Array<{ request_id: string; error: { message: string } }>; total: number };

test('queue from the invoke panel; dead letters appear live with their errors; redrive, discard, redrive all', async () => {
  const fn = await deployReady(fnvm, { name: 'queued', runtime: 'node', code, async_max_retries: 1 });
  await page.goto(`${fnvm.url}/functions/${fn.id}`);
  const card = page.locator('#async');
  await card.getByText('Up to 1 retry after an error or timeout').waitFor();
  assert.equal(await card.getByTestId('dead-letter-count').textContent(), '0');

  // Queue one from the panel: it answers with the request id, and its attempt shows in the history.
  await page.getByTestId('invoke-async').check();
  await page.getByRole('button', { name: 'Queue' }).click();
  const queuedText = (await page.getByTestId('invoke-queued').locator('code').textContent()) ?? '';
  assert.match(queuedText, /^[0-9a-f-]{36}$/);
  await page.locator('#history').getByText(queuedText.slice(0, 8)).first().waitFor();
  const logs = (await fnvm.api('/v1/functions/queued/logs')).body.items;
  assert.deepEqual(logs.filter((r: { request_id: string }) => r.request_id === queuedText).map((r: { attempt: number; async: boolean; status: string }) => [r.attempt, r.async, r.status]), [[1, true, 'success']]);

  // Three failing events: each is tried twice, then listed with its error, without a reload.
  for (const n of [1, 2, 3]) assert.equal((await enqueue({ n, fail: true })).status, 202);
  await card.getByTestId('dead-letter').nth(2).waitFor();
  assert.equal(await card.getByTestId('dead-letter-count').textContent(), '3');
  const api = await deadLetters();
  const shownErrors = await card.getByTestId('dead-letter-error').allTextContents();
  assert.deepEqual(shownErrors.sort(), api.items.map((d) => `Error: ${d.error.message}`).sort());
  assert.deepEqual(shownErrors.sort(), [1, 2, 3].map((n) => `Error: failing on purpose: ${n}`));
  await card.screenshot({ path: join(screenshots, 'dead-letters.png') });

  // The event of a row, on demand.
  const first = card.getByTestId('dead-letter').first();
  const firstId = (await first.getAttribute('data-request-id')) ?? '';
  await first.getByTestId('dead-letter-error').click();
  const event = JSON.parse((await card.getByTestId('dead-letter-event').textContent()) ?? 'null') as { n: number; fail: boolean };
  assert.equal(event.fail, true);

  // Discard one: gone from the list and from the API.
  await first.getByTestId('discard').click();
  await card.locator(`[data-request-id="${firstId}"]`).waitFor({ state: 'detached' });
  assert.equal((await deadLetters()).total, 2);
  assert.ok(!(await deadLetters()).items.some((d) => d.request_id === firstId));

  // Fix the code, redrive one row: it runs again, succeeds, and leaves the list.
  assert.equal((await fnvm.api('/v1/functions/queued', { method: 'PUT', body: { code: code.replace("if (event.fail) throw new Error('failing on purpose: ' + event.n);", '') } })).status, 200);
  const second = card.getByTestId('dead-letter').first();
  const secondId = (await second.getAttribute('data-request-id')) ?? '';
  await second.getByTestId('redrive').click();
  await card.locator(`[data-request-id="${secondId}"]`).waitFor({ state: 'detached' });
  assert.equal(await card.getByTestId('dead-letter-count').textContent(), '1');
  const secondRecords = (await fnvm.api('/v1/functions/queued/logs?limit=100')).body.items.filter((r: { request_id: string }) => r.request_id === secondId);
  assert.deepEqual(secondRecords.map((r: { attempt: number; status: string }) => [r.attempt, r.status]), [[3, 'success'], [2, 'error'], [1, 'error']]);

  // Redrive all: the last one runs and the list is empty.
  await card.getByTestId('redrive-all').click();
  await card.getByTestId('dead-letters').waitFor({ state: 'detached' });
  assert.equal(await card.getByTestId('dead-letter-count').textContent(), '0');
  assert.deepEqual(await deadLetters(), { items: [], total: 0 });
  assert.deepEqual(pageErrors, []);
});

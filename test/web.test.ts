// The web console end to end: headless Chromium (Debian's, driven by playwright-core) against a real fnvm
// server with real microVMs. Everything goes through the forms and buttons a user would use.
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { repoRoot } from '../src/paths.js';
import { screenshots, startConsoleTest, stopConsoleTest, type ConsoleBrowser } from './support/browser.js';
import { startTestServer, type TestServer } from './support/server.js';

/** A deploy under software emulation on a shared 2-core machine. */
const deployMs = 60_000;
/** Anything else the page does: an API round trip, an invoke, a render. */
const uiMs = 20_000;

const nodeCode = `async function handler(event) {
  console.log('node got ' + event.name);
  return { message: process.env.GREETING + ', ' + event.name + '!', doubled: event.n * 2 };
}`;
const nodeCodeV2 = `async function handler(event) {
  console.log('v2 shouting');
  return { shout: String(event.name).toUpperCase(), version: 2 };
}`;
const pythonCode = `import os

def handler(event):
    print('python got', event.get('n'))
    return {'message': os.environ.get('GREETING', '?') + ', ' + event.get('name', 'nobody'), 'tripled': event.get('n', 0) * 3}`;

let fnvm: TestServer;
let browser: Browser;
/** The page the user works in. */
let page: Page;
/** A second tab that stays on the list, to see it follow changes made in the first. */
let listPage: Page;
let pageErrors: Error[] = [];
let openPage: ConsoleBrowser['openPage'];

before(async () => {
  ({ fnvm, browser, page, pageErrors, openPage } = await startConsoleTest(uiMs));
});

after(() => stopConsoleTest({ fnvm, browser }));

const row = (on: Page, name: string): Locator => on.locator(`[data-testid="function-row"][data-name="${name}"]`);
const stateOf = (scope: Page | Locator, testId: string, state: string): Locator =>
  scope.locator(`[data-testid="${testId}"][data-state="${state}"]`);
const codeEditor = (on: Page) => on.getByRole('textbox', { name: 'Code', exact: true });
const eventEditor = (on: Page) => on.getByRole('textbox', { name: 'Event (JSON)' });

/** The function's id from the detail page's URL. */
function idFromUrl(on: Page): string {
  const match = /\/functions\/([0-9a-f-]{36})/.exec(on.url());
  assert.ok(match?.[1], `a detail page URL: ${on.url()}`);
  return match[1];
}

async function invoke(event: unknown, expected: string): Promise<Locator> {
  await eventEditor(page).fill(JSON.stringify(event, null, 2));
  await page.getByRole('button', { name: 'Invoke', exact: true }).click();
  const response = page.getByTestId('response').filter({ hasText: expected });
  await response.waitFor();
  return page.getByTestId('invoke-result');
}

async function shot(name: string, on: Page = page, fullPage = false): Promise<string> {
  const path = join(screenshots, `${name}.png`);
  await on.evaluate(() => window.scrollTo(0, 0)); // the sticky top bar belongs at the top of a full-page shot
  await on.screenshot({ path, fullPage });
  return path;
}

describe('web console', () => {
  test('the root URL serves the console; an empty list offers to create a function', async () => {
    await page.goto('/');
    await page.getByText('No functions yet.').waitFor();
    await page.getByTestId('live').filter({ hasText: 'live' }).waitFor();
    assert.equal(await page.title(), 'Functions · fnvm');
    // Client-side routes load the app too (SPA fallback); unknown API paths stay JSON.
    assert.equal((await page.request.get('/functions/whatever')).headers()['content-type']?.startsWith('text/html'), true);
    assert.equal((await fnvm.api('/v1/nope')).status, 404);
  });

  let nodeId: string;
  test('create a Node.js function through the form; its page follows the deployment to ready', async () => {
    listPage = await openPage();
    await listPage.goto('/');
    await listPage.getByText('No functions yet.').waitFor();
    await listPage.evaluate(() => ((window as unknown as { marker: string }).marker = 'not reloaded'));

    await page.getByRole('link', { name: 'New function' }).click();
    await page.waitForURL('**/new');
    await codeEditor(page).getByText('async function handler(event)').waitFor();
    await page.getByLabel('Name', { exact: true }).fill('greeter-node');
    await codeEditor(page).fill(nodeCode);
    await page.getByRole('button', { name: 'Add variable' }).click();
    await page.getByLabel('Variable 1 name').fill('GREETING');
    await page.getByLabel('Variable 1 value').fill('Hello');
    await shot('create');

    await page.getByRole('button', { name: 'Create function' }).click();
    await page.waitForURL(/\/functions\/[0-9a-f-]{36}$/);
    nodeId = idFromUrl(page);
    await stateOf(page, 'function-state', 'ready').waitFor({ timeout: deployMs });
    await page.getByTestId('deploy-status').getByText('The function is ready').waitFor();
    assert.match(await page.getByTestId('vm-id').innerText(), /\S/, 'the VM is shown');
    assert.equal(await page.getByTestId('host').innerText(), 'this server (not a fleet)');

    const stored = (await fnvm.api(`/v1/functions/${nodeId}`)).body.item;
    assert.equal(stored.code, nodeCode, 'the editor sent exactly what was typed');
    assert.deepEqual(stored.env_vars, { GREETING: 'Hello' });

    // "Test invoke" runs the event in the invoke form ({"name": "World"} to start with).
    await page.getByRole('button', { name: 'Test invoke' }).click();
    await page.getByTestId('response').filter({ hasText: 'Hello, World!' }).waitFor();

    // The list in the other tab followed all of it without a reload.
    await stateOf(row(listPage, 'greeter-node'), 'state', 'ready').waitFor();
    assert.equal(await listPage.evaluate(() => (window as unknown as { marker?: string }).marker), 'not reloaded');
  });

  test('invoke with a custom event: response, logs and duration', async () => {
    const result = await invoke({ name: 'Ada', n: 21 }, 'Hello, Ada!');
    assert.match(await result.getByTestId('response').innerText(), /"doubled": 42/);
    assert.equal(await result.getByTestId('logs').innerText(), 'node got Ada');
    assert.match(await result.getByTestId('duration').innerText(), /^\d+(\.\d+)? (ms|s)$/);
    assert.equal(await result.getByTestId('invoke-status').getAttribute('data-state'), 'success');
  });

  test('edit the code inline: Ctrl+S hot-reloads it; a bad update shows the 400 and keeps the old code', async () => {
    await codeEditor(page).fill(nodeCodeV2);
    await page.getByTestId('save-status').filter({ hasText: 'Unsaved changes' }).waitFor();
    await codeEditor(page).press('Control+s');
    await page.getByTestId('save-status').filter({ hasText: 'Saved, live now' }).waitFor();
    await page.getByTestId('function-version').filter({ hasText: 'v2' }).waitFor();
    await invoke({ name: 'Ada' }, '"shout": "ADA"');
    assert.equal(await page.getByTestId('logs').innerText(), 'v2 shouting');

    await codeEditor(page).fill('async function handler(event) { return {');
    await codeEditor(page).press('Control+Enter');
    const formError = page.getByTestId('form-error');
    await formError.waitFor();
    assert.match(await formError.innerText(), /does not load: SyntaxError/);
    assert.match(await formError.innerText(), /HTTP 400/);
    assert.equal((await fnvm.api(`/v1/functions/${nodeId}`)).body.item.version, 2, 'nothing stored');
    await page.getByRole('button', { name: 'Discard changes' }).click();
    await codeEditor(page).getByText("console.log('v2 shouting');").waitFor();
  });

  test('invocation history: newest first, expandable, paginated', async () => {
    const history = page.getByRole('table', { name: 'Invocation history' });
    await history.getByTestId('invocation-row').nth(2).waitFor();
    assert.equal(await history.getByTestId('invocation-row').count(), 3);
    const newest = history.getByTestId('invocation-row').first();
    assert.equal(await newest.getByRole('cell', { name: 'v2', exact: true }).count(), 1, 'newest first');
    await newest.getByRole('button', { name: 'Details' }).click();
    const detail = history.getByTestId('invocation-detail');
    await detail.getByText('v2 shouting').waitFor();
    await detail.getByText('"shout": "ADA"').waitFor();

    // A page size of 10 with 12 invocations: two pages, the second with the oldest two. The history follows the
    // invocations live: no refresh.
    for (let n = 0; n < 9; n++) await invoke({ name: `n${n}` }, `"shout": "N${n}"`);
    await page.getByTestId('page-range').filter({ hasText: '1–10' }).waitFor();
    await page.getByRole('button', { name: 'Older →' }).click();
    await page.getByTestId('page-range').filter({ hasText: '11–12' }).waitFor();
    assert.equal(await history.getByTestId('invocation-row').count(), 2);
    assert.equal(await page.getByRole('button', { name: 'Older →' }).isDisabled(), true);
    await page.getByRole('button', { name: '← Newer' }).click();
    await page.getByTestId('page-range').filter({ hasText: '1–10' }).waitFor();
    await history.getByTestId('invocation-row').first().getByRole('button', { name: 'Details' }).click();
    await history.getByTestId('invocation-detail').first().getByText('"shout": "N8"').waitFor();
    await shot('detail', page, true);
    // The README's picture is refreshed on request, so a test run leaves the checkout clean.
    if (process.env.FNVM_UPDATE_DOCS) copyFileSync(join(screenshots, 'detail.png'), join(repoRoot, 'docs', 'console-detail.png'));
  });

  test('create a Python function: the runtime switches the starter; it deploys and answers', async () => {
    await page.getByRole('link', { name: 'New', exact: true }).click();
    await page.waitForURL('**/new');
    await page.getByLabel('Runtime', { exact: true }).selectOption('python');
    await codeEditor(page).getByText('def handler(event):').waitFor();
    await page.getByLabel('Name', { exact: true }).fill('greeter-py');
    await codeEditor(page).fill(pythonCode);
    await page.getByLabel('Timeout (s)').fill('10');
    await page.getByLabel('Memory (MB)').fill('320');
    await page.getByRole('button', { name: 'Add variable' }).click();
    await page.getByLabel('Variable 1 name').fill('GREETING');
    await page.getByLabel('Variable 1 value').fill('Hola');
    await codeEditor(page).press('Control+s');

    await page.waitForURL(/\/functions\/[0-9a-f-]{36}$/);
    const id = idFromUrl(page);
    // The list tab sees it arrive and become ready.
    await row(listPage, 'greeter-py').waitFor();
    await stateOf(row(listPage, 'greeter-py'), 'state', 'ready').waitFor({ timeout: deployMs });
    await stateOf(page, 'function-state', 'ready').waitFor({ timeout: deployMs });
    const stored = (await fnvm.api(`/v1/functions/${id}`)).body.item;
    assert.equal(stored.runtime, 'python');
    assert.equal(stored.code, pythonCode);
    assert.equal(stored.timeout_seconds, 10);
    assert.equal(stored.memory_mb, 320);

    const result = await invoke({ name: 'Mundo', n: 5 }, 'Hola, Mundo');
    assert.match(await result.getByTestId('response').innerText(), /"tripled": 15/);
    assert.equal(await result.getByTestId('logs').innerText(), 'python got 5');
  });

  test('a deploy error is shown in full, on the function page and in the list', async () => {
    await page.getByRole('link', { name: 'New', exact: true }).click();
    await page.waitForURL('**/new');
    await page.getByLabel('Name', { exact: true }).fill('broken');
    await codeEditor(page).fill('function handler( {');
    await page.getByRole('button', { name: 'Create function' }).click();
    await page.waitForURL(/\/functions\/[0-9a-f-]{36}$/);
    await stateOf(page, 'function-state', 'error').waitFor({ timeout: deployMs });
    const deployError = page.getByTestId('deploy-error');
    assert.match(await deployError.innerText(), /SyntaxError/);
    assert.equal(await page.getByRole('button', { name: 'Invoke', exact: true }).isDisabled(), true);
    await shot('error-function', page, true);

    await stateOf(row(listPage, 'broken'), 'state', 'error').waitFor();
    assert.match(await row(listPage, 'broken').innerText(), /SyntaxError/);
    assert.equal(await row(listPage, 'broken').getByRole('button', { name: 'Invoke' }).isDisabled(), true);
  });

  test('the list: search and filter by runtime and state; Invoke and Logs lead to the function', async () => {
    await listPage.bringToFront();
    const rows = listPage.getByTestId('function-row');
    await rows.nth(2).waitFor();
    assert.equal(await rows.count(), 3);

    await listPage.getByLabel('State', { exact: true }).selectOption('error');
    await listPage.getByTestId('count').filter({ hasText: '1 of 3' }).waitFor();
    assert.deepEqual(await rows.evaluateAll((els) => els.map((el) => el.getAttribute('data-name'))), ['broken']);
    await listPage.getByLabel('State', { exact: true }).selectOption('all');
    await listPage.getByLabel('Runtime', { exact: true }).selectOption('python');
    await listPage.getByTestId('count').filter({ hasText: '1 of 3' }).waitFor();
    assert.deepEqual(await rows.evaluateAll((els) => els.map((el) => el.getAttribute('data-name'))), ['greeter-py']);
    await listPage.getByLabel('Runtime', { exact: true }).selectOption('all');
    await listPage.getByLabel('Search').fill('greeter');
    await listPage.getByTestId('count').filter({ hasText: '2 of 3' }).waitFor();
    await listPage.getByLabel('Search').fill('');
    await listPage.getByTestId('count').filter({ hasText: '3 of 3' }).waitFor();

    await row(listPage, 'greeter-node').getByRole('button', { name: 'Logs' }).click();
    await listPage.waitForURL(`**/functions/${nodeId}#history`);
    await listPage.getByRole('table', { name: 'Invocation history' }).getByTestId('invocation-row').first().waitFor();
    await listPage.goBack();
    await row(listPage, 'greeter-node').getByRole('button', { name: 'Invoke' }).click();
    await listPage.waitForURL(`**/functions/${nodeId}#invoke`);
    await listPage.getByRole('button', { name: 'Invoke', exact: true }).click();
    await listPage.getByTestId('response').filter({ hasText: '"shout": "WORLD"' }).waitFor();
    await listPage.goBack();
    await row(listPage, 'greeter-node').waitFor();
  });

  test('delete asks for confirmation; the row goes away everywhere', async () => {
    await page.goto('/');
    await row(page, 'greeter-py').waitFor();
    assert.notEqual(await row(page, 'greeter-py').locator('time').innerText(), 'never', 'a loaded list shows the last invocation');
    await shot('list');
    await row(page, 'broken').getByRole('button', { name: 'Delete' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete broken?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await row(page, 'broken').count(), 1, 'cancel keeps it');

    await row(page, 'broken').getByRole('button', { name: 'Delete' }).click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await row(page, 'broken').waitFor({ state: 'detached' });
    await row(listPage, 'broken').waitFor({ state: 'detached' }); // the other tab, from the event stream
    assert.equal((await fnvm.api('/v1/functions/broken')).status, 404);

    // From the function's own page too.
    await row(page, 'greeter-py').getByRole('link', { name: 'greeter-py' }).click();
    await stateOf(page, 'function-state', 'ready').waitFor();
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog', { name: 'Delete greeter-py?' }).getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(fnvm.url + '/');
    await page.getByTestId('count').filter({ hasText: '1 of 1' }).waitFor();
    assert.equal((await fnvm.api('/v1/functions/greeter-py')).status, 404);
  });

  test('a 390 px wide screen: no horizontal scrolling on the list or a function page', async () => {
    const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: fnvm.url });
    narrow.setDefaultTimeout(uiMs);
    try {
      const phone = await openPage(narrow);
      await phone.goto('/');
      await row(phone, 'greeter-node').waitFor();
      const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(await overflow(), 0, 'the list fits');
      await shot('list-390', phone);
      await row(phone, 'greeter-node').getByRole('link', { name: 'greeter-node' }).click();
      await stateOf(phone, 'function-state', 'ready').waitFor();
      await phone.getByRole('table', { name: 'Invocation history' }).getByTestId('invocation-row').first().waitFor();
      assert.equal(await overflow(), 0, 'the function page fits');
      await shot('detail-390', phone, true);
    } finally {
      await narrow.close();
    }
  });

  test('a server with an API token: the console asks for it, then works live', async () => {
    const guarded = await startTestServer({ apiToken: 'console-secret', poolSize: 0 });
    const tokenContext = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: guarded.url });
    tokenContext.setDefaultTimeout(uiMs);
    try {
      const tab = await openPage(tokenContext);
      await tab.goto('/');
      await tab.getByRole('heading', { name: 'This server needs an API token' }).waitFor();
      await tab.getByLabel('API token').fill('wrong');
      await tab.getByRole('button', { name: 'Use token' }).click();
      await tab.getByText('The saved token was refused.').waitFor();
      await tab.getByLabel('API token').fill('console-secret');
      await tab.getByRole('button', { name: 'Use token' }).click();
      await tab.getByText('No functions yet.').waitFor();
      await tab.getByTestId('live').filter({ hasText: 'live' }).waitFor(); // the event stream took the token too
      assert.equal(await tab.getByRole('heading', { name: 'This server needs an API token' }).count(), 0);
    } finally {
      await tokenContext.close();
      await guarded.stop();
    }
  });

  test('no uncaught errors in the pages', () => {
    assert.deepEqual(pageErrors.map((e) => e.stack ?? e.message), []);
  });
});

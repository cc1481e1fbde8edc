// The web console with deployment packages, end to end: headless Chromium (Debian's, driven by playwright-core)
// against a real fnvm server with real microVMs. A function is created from a zip through the file picker, its
// package page shows the zip's facts, its file tree and its files' content, a new zip dropped on the page deploys a
// new version, and refused zips show the API's message.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { screenshots, startConsoleTest, stopConsoleTest, type ConsoleBrowser } from './support/browser.js';
import type { TestServer } from './support/server.js';
import { zipOf, type Files } from './support/zips.js';

/** A deploy under software emulation on a shared 2-core machine. */
const deployMs = 90_000;
/** Anything else the page does: an API round trip, a render. */
const uiMs = 20_000;

const utilV1 = `exports.greet = (name) => 'Hello from lib/util.js, ' + name + '!';\n`;
const v1: Files = {
  'index.js': `const fs = require('fs');
const { greet } = require('./lib/util');
exports.handler = async (event) => ({ message: greet(event.name), motto: fs.readFileSync(__dirname + '/data/motto.txt', 'utf8').trim() });
`,
  'lib/util.js': utilV1,
  'data/motto.txt': 'small files, one zip\n',
  // Not text: shown as a note, not as bytes.
  'assets/logo.bin': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0x00, 0x01, 0xff, 0xfe, 0x00]),
  // Over 1 MiB: not fetched for the viewer (it compresses to almost nothing in the zip).
  'data/big.txt': 'x'.repeat(1_200_000),
  'node_modules/left-pad/index.js': 'module.exports = (s, n) => String(s).padStart(n);\n',
  'node_modules/left-pad/package.json': JSON.stringify({ name: 'left-pad', version: '1.3.0' }),
  'package.json': JSON.stringify({ name: 'packaged', version: '1.0.0' }),
};
const utilV2 = `exports.greet = (name) => 'Howdy from v2, ' + name + '!';\n`;
const v2: Files = {
  'index.js': `const { greet } = require('./lib/util');
const { twice } = require('./lib/extra');
exports.handler = async (event) => ({ message: greet(event.name), twice: twice(event.n) });
`,
  'lib/util.js': utilV2,
  'lib/extra.js': 'exports.twice = (n) => n * 2;\n',
  'package.json': JSON.stringify({ name: 'packaged', version: '2.0.0' }),
};

/** The console's size format (web/src/zip-file.ts): bytes below 1 KiB, then one decimal below 100 (no bare .0). */
function shownSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const [value, unit] = bytes < 2 ** 20 ? [bytes / 1024, 'KiB'] : [bytes / 2 ** 20, 'MiB'];
  return `${value < 100 ? value.toFixed(1).replace(/\.0$/, '') : Math.round(value)} ${unit}`;
}
const unpacked = (files: Files) => Object.values(files).reduce((sum, content) => sum + Buffer.byteLength(content), 0);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

let fnvm: TestServer;
let browser: Browser;
let page: Page;
let zip1: Buffer;
let zip2: Buffer;
let pageErrors: Error[] = [];
let openPage: ConsoleBrowser['openPage'];

before(async () => {
  [zip1, zip2] = await Promise.all([zipOf(v1), zipOf(v2)]);
  ({ fnvm, browser, page, pageErrors, openPage } = await startConsoleTest(uiMs));
});

after(() => stopConsoleTest({ fnvm, browser }));

const tree = (on: Page) => on.getByTestId('file-tree');
const treeFile = (on: Page, path: string) => tree(on).locator(`[data-testid="tree-file"][data-path="${path}"]`);
const treeDir = (on: Page, path: string) => tree(on).locator(`[data-testid="tree-dir"][data-path="${path}"]`);
/** The paths the tree shows at its top level, in order. */
const topLevel = (on: Page) => tree(on).locator(':scope > li[data-path]').evaluateAll((els) => els.map((el) => el.getAttribute('data-path')));
/** The read-only viewer's text (CodeMirror renders lines as divs). */
const shownContent = (on: Page) => on.getByTestId('file-content').locator('.cm-content').evaluate((el) =>
  Array.from(el.querySelectorAll('.cm-line'), (line) => line.textContent).join('\n'));

async function shot(name: string, on: Page = page, fullPage = false): Promise<string> {
  const path = join(screenshots, `${name}.png`);
  await on.evaluate(() => window.scrollTo(0, 0));
  await on.screenshot({ path, fullPage });
  return path;
}

/** Waits for the deployment to end and fails with the deploy error unless it is ready. */
async function expectReady(on: Page, id: string): Promise<void> {
  await on.locator('[data-testid="function-state"][data-state="ready"], [data-testid="function-state"][data-state="error"]').waitFor({ timeout: deployMs });
  const item = (await fnvm.api(`/v1/functions/${id}`)).body.item;
  assert.equal(item.state, 'ready', `the deployment ended in ${item.state}: ${item.error}`);
}

/** Drops `zip` on the element as a user would drag a file from the desktop (a DataTransfer with one File). */
async function dropZip(target: Locator, name: string, zip: Buffer): Promise<void> {
  await target.evaluate((element, { name, base64 }) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: 'application/zip' }));
    for (const type of ['dragenter', 'dragover', 'drop']) {
      element.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
    }
  }, { name, base64: zip.toString('base64') });
}

describe('web console: deployment packages', () => {
  let id: string;

  test('create a function from a zip through the file picker; it deploys to ready and answers', async () => {
    await page.goto('/new');
    await page.getByLabel('Name', { exact: true }).fill('packaged');
    await page.getByLabel('Upload a zip').check();
    const handler = page.getByLabel('Handler', { exact: true });
    assert.equal(await handler.inputValue(), '', 'a zip starts with the server default handler');
    assert.equal(await handler.getAttribute('placeholder'), 'index.handler');
    await page.getByLabel('Runtime', { exact: true }).selectOption('python');
    assert.equal(await handler.getAttribute('placeholder'), 'lambda_function.lambda_handler');
    await page.getByLabel('Runtime', { exact: true }).selectOption('node');
    assert.equal(await page.getByRole('textbox', { name: 'Code', exact: true }).count(), 0, 'no code editor for a zip');

    // Create without a zip: the form says what is missing and sends nothing.
    await page.getByRole('button', { name: 'Create function' }).click();
    assert.match(await page.getByTestId('form-error').innerText(), /Choose a zip file/);

    await page.getByLabel('Zip file').setInputFiles({ name: 'app.zip', mimeType: 'application/zip', buffer: zip1 });
    const zone = page.getByTestId('create-drop-zone');
    assert.equal(await zone.getByTestId('chosen-name').innerText(), 'app.zip');
    assert.equal(await zone.getByTestId('chosen-size').innerText(), shownSize(zip1.length));
    await shot('package-create');
    await page.getByRole('button', { name: 'Create function' }).click();
    // The package page, or the form's error (the server's refusal) as the reason this test fails.
    await page.locator('[data-testid="package"], [data-testid="form-error"]').first().waitFor({ timeout: deployMs });
    const refused = page.getByTestId('form-error');
    if (await refused.count()) assert.fail(`the server refused the package: ${await refused.innerText()}`);
    await page.waitForURL(/\/functions\/[0-9a-f-]{36}$/);
    id = /\/functions\/([0-9a-f-]{36})/.exec(page.url())?.[1] ?? '';

    const stored = (await fnvm.api(`/v1/functions/${id}`)).body.item;
    assert.equal(stored.code, undefined);
    assert.equal(stored.handler, 'index.handler', 'no handler sent: the runtime default');
    assert.deepEqual(stored.package, { sha256: sha256(zip1), size: zip1.length, unpacked_size: unpacked(v1), files: Object.keys(v1).length });

    await expectReady(page, id);
    await page.getByRole('button', { name: 'Test invoke' }).click();
    await page.getByTestId('response').filter({ hasText: 'Hello from lib/util.js, World!' }).waitFor({ timeout: deployMs });
    assert.match(await page.getByTestId('response').innerText(), /"motto": "small files, one zip"/);
  });

  test("the package page: the zip's facts, a download, the file tree and a file's content", async () => {
    await page.goto(`/functions/${id}`);
    const pkg = page.getByTestId('package');
    assert.equal(await pkg.getByTestId('package-sha').innerText(), sha256(zip1).slice(0, 12));
    assert.equal(await pkg.getByTestId('package-sha').getAttribute('title'), sha256(zip1));
    assert.equal(await pkg.getByTestId('package-size').innerText(), shownSize(zip1.length));
    assert.equal(await pkg.getByTestId('package-unpacked').innerText(), shownSize(unpacked(v1)));
    assert.equal(await pkg.getByTestId('package-files').innerText(), String(Object.keys(v1).length));
    assert.equal(await page.getByRole('textbox', { name: 'Code', exact: true }).count(), 0, 'no code editor for a package');

    const download = await page.request.get((await pkg.getByTestId('package-download').getAttribute('href')) ?? '');
    assert.ok(Buffer.from(await download.body()).equals(zip1), 'the download link gives the zip as uploaded');

    // Directories first, then files, by name; node_modules closed, the small package's other directories open.
    assert.deepEqual(await topLevel(page), ['assets', 'data', 'lib', 'node_modules', 'index.js', 'package.json']);
    assert.equal(await treeDir(page, 'node_modules').getAttribute('aria-expanded'), 'false');
    assert.equal(await treeDir(page, 'lib').getAttribute('aria-expanded'), 'true');
    assert.equal(await treeFile(page, 'node_modules/left-pad/index.js').count(), 0, 'a closed directory renders no children');
    assert.equal(await treeFile(page, 'lib/util.js').getByTestId('file-size').innerText(), `${Buffer.byteLength(utilV1)} B`);
    assert.match(await treeDir(page, 'data').locator(':scope > button').innerText(), new RegExp(`2 files · ${shownSize(1_200_000 + 21).replace('.', '\\.')}`));

    await treeFile(page, 'lib/util.js').click();
    await page.getByTestId('file-viewer').and(page.locator('[data-path="lib/util.js"]')).waitFor();
    await page.getByTestId('file-content').getByText('Hello from lib/util.js').waitFor();
    assert.equal(await shownContent(page), utilV1, 'the file as it is in the zip');
    assert.equal(await page.getByTestId('file-content').getAttribute('data-language'), 'javascript');
    assert.equal(await page.getByTestId('file-content').getAttribute('data-readonly'), 'true');
    assert.equal(await page.getByTestId('file-content').locator('.cm-content').getAttribute('contenteditable'), 'false');

    await treeFile(page, 'data/motto.txt').click();
    await page.getByTestId('file-content').getByText('small files, one zip').waitFor();
    assert.equal(await page.getByTestId('file-content').getAttribute('data-language'), 'text');
    await treeFile(page, 'assets/logo.bin').click();
    assert.match(await page.getByTestId('file-note').innerText(), /binary file \(10 B\)/);
    await treeFile(page, 'data/big.txt').click();
    assert.match(await page.getByTestId('file-note').innerText(), /This file is 1\.1 MiB: files over 1 MiB are not shown/);

    await treeDir(page, 'node_modules').locator(':scope > button').click();
    await treeDir(page, 'node_modules/left-pad').waitFor();
    assert.equal(await treeDir(page, 'node_modules/left-pad').getAttribute('aria-expanded'), 'false');
    await treeDir(page, 'node_modules/left-pad').locator(':scope > button').click();
    await treeFile(page, 'node_modules/left-pad/index.js').click();
    await page.getByTestId('file-content').getByText('padStart').waitFor();
    await treeDir(page, 'lib').locator(':scope > button').click();
    await treeFile(page, 'lib/util.js').waitFor({ state: 'detached' });
    await treeDir(page, 'lib').locator(':scope > button').click();
    await treeFile(page, 'lib/util.js').click();
    await page.getByTestId('file-content').getByText('Hello from lib/util.js').waitFor();
    await shot('package-detail', page, true);
  });

  test('a new zip dropped on the page deploys a new version; the facts, the tree and the shown file follow', async () => {
    const zone = page.getByTestId('update-drop-zone');
    await dropZip(zone, 'v2.zip', zip2);
    assert.equal(await zone.getByTestId('chosen-name').innerText(), 'v2.zip');
    assert.equal(await zone.getByTestId('chosen-size').innerText(), shownSize(zip2.length));
    await page.getByRole('button', { name: 'Upload and deploy' }).click();
    const result = page.getByTestId('package-result');
    await result.waitFor({ timeout: deployMs });
    assert.equal(await result.innerText(), `Deployed v2: ${Object.keys(v2).length} files, sha256 ${sha256(zip2).slice(0, 12)}`);
    await page.getByTestId('function-version').filter({ hasText: 'v2' }).waitFor();
    await page.getByTestId('package-sha').filter({ hasText: sha256(zip2).slice(0, 12) }).waitFor();
    assert.equal(await page.getByTestId('package-files').innerText(), String(Object.keys(v2).length));
    assert.equal(await page.getByTestId('package-unpacked').innerText(), shownSize(unpacked(v2)));

    // The tree is the new package's; lib/util.js, still there, shows its new content.
    await treeFile(page, 'lib/extra.js').waitFor();
    assert.deepEqual(await topLevel(page), ['lib', 'index.js', 'package.json']);
    await page.getByTestId('file-content').getByText('Howdy from v2').waitFor();
    assert.equal(await shownContent(page), utilV2, 'the new file as it is in the new zip');
    const stored = (await fnvm.api(`/v1/functions/${id}`)).body.item;
    assert.equal(stored.package.sha256, sha256(zip2));

    await expectReady(page, id);
    await page.getByRole('textbox', { name: 'Event (JSON)' }).fill('{"name": "Ada", "n": 21}');
    await page.getByRole('button', { name: 'Invoke', exact: true }).click();
    await page.getByTestId('response').filter({ hasText: 'Howdy from v2, Ada!' }).waitFor({ timeout: deployMs });
    assert.match(await page.getByTestId('response').innerText(), /"twice": 42/);
  });

  test("refused zips show the API's message in full and change nothing", async () => {
    await page.goto(`/functions/${id}`);
    await page.getByTestId('package-sha').filter({ hasText: sha256(zip2).slice(0, 12) }).waitFor();
    const before = (await fnvm.api(`/v1/functions/${id}`)).body.item;
    await page.getByLabel('New zip file').setInputFiles({ name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('these are notes, not a zip file\n') });
    await page.getByRole('button', { name: 'Upload and deploy' }).click();
    const error = page.getByTestId('package-error');
    await error.waitFor();
    const shown = await error.innerText();
    assert.match(shown, /package refused: \S/);
    assert.match(shown, /HTTP 400/);
    const after = (await fnvm.api(`/v1/functions/${id}`)).body.item;
    assert.equal(after.version, before.version, 'nothing deployed');
    assert.equal(after.package.sha256, sha256(zip2));
    assert.equal(await page.getByTestId('package-sha').innerText(), sha256(zip2).slice(0, 12));

    // An empty file is not sent at all.
    await page.getByLabel('New zip file').setInputFiles({ name: 'empty.zip', mimeType: 'application/zip', buffer: Buffer.alloc(0) });
    assert.equal(await page.getByTestId('zip-problem').innerText(), 'empty.zip is empty');
    assert.equal(await page.getByRole('button', { name: 'Upload and deploy' }).isDisabled(), true);

    // On create too: the API's refusal, and no function.
    await page.goto('/new');
    await page.getByLabel('Name', { exact: true }).fill('not-a-zip');
    await page.getByLabel('Upload a zip').check();
    await page.getByLabel('Zip file').setInputFiles({ name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('PK but not really a zip') });
    await page.getByRole('button', { name: 'Create function' }).click();
    const formError = page.getByTestId('form-error');
    await formError.waitFor();
    assert.match(await formError.innerText(), /Could not create the function\s+package refused: \S/);
    assert.match(await formError.innerText(), /HTTP 400/);
    assert.ok(page.url().endsWith('/new'), 'still on the form');
    assert.equal((await fnvm.api('/v1/functions/not-a-zip')).status, 404);
  });

  test('10,000 files: only open directories render, a big directory shows its first entries', async () => {
    const files: Files = { 'index.js': 'exports.handler = async () => 1;\n' };
    for (let n = 0; n < 9_999; n++) files[`node_modules/pkg-${String(n).padStart(4, '0')}/index.js`] = `module.exports = ${n};\n`;
    const zip = await zipOf(files);
    const created = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'many-files', runtime: 'node', package: zip.toString('base64') } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    await page.goto(`/functions/${created.body.id}`);
    await treeDir(page, 'node_modules').waitFor();
    assert.equal(await page.getByTestId('package-files').innerText(), '10,000');
    assert.deepEqual(await topLevel(page), ['node_modules', 'index.js']);
    assert.match(await treeDir(page, 'node_modules').locator(':scope > button').innerText(), /9,999 files/);
    assert.equal(await tree(page).locator('li').count(), 2, 'a closed node_modules renders nothing of its 9,999 files');
    await treeDir(page, 'node_modules').locator(':scope > button').click();
    await treeDir(page, 'node_modules/pkg-0299').waitFor();
    assert.equal(await tree(page).locator('[data-testid="tree-dir"]').count(), 1 + 300, 'the first 300 entries');
    assert.equal(await treeDir(page, 'node_modules/pkg-0300').count(), 0);
    await tree(page).getByRole('button', { name: 'Show 300 more of 9699' }).click();
    await treeDir(page, 'node_modules/pkg-0599').waitFor();
    await treeDir(page, 'node_modules/pkg-0042').locator(':scope > button').click();
    await treeFile(page, 'node_modules/pkg-0042/index.js').click();
    await page.getByTestId('file-content').getByText('module.exports = 42;').waitFor();
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('dialog', { name: 'Delete many-files?' }).getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(fnvm.url + '/');
  });

  test('a 390 px wide screen: the package page and the zip form do not scroll sideways', async () => {
    const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: fnvm.url });
    narrow.setDefaultTimeout(uiMs);
    try {
      const phone = await openPage(narrow);
      const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      await phone.goto(`/functions/${id}`);
      await treeFile(phone, 'lib/extra.js').click();
      await phone.getByTestId('file-content').getByText('n * 2').waitFor();
      await phone.getByLabel('New zip file').setInputFiles({ name: 'a-rather-long-file-name-for-a-narrow-screen-v3.zip', mimeType: 'application/zip', buffer: zip2 });
      assert.equal(await overflow(), 0, 'the package page fits');
      await shot('package-detail-390', phone, true);
      await phone.goto('/new');
      await phone.getByLabel('Upload a zip').check();
      await phone.getByLabel('Zip file').setInputFiles({ name: 'app.zip', mimeType: 'application/zip', buffer: zip1 });
      assert.equal(await overflow(), 0, 'the zip form fits');
      await shot('package-create-390', phone, true);
    } finally {
      await narrow.close();
    }
  });

  test('no uncaught errors in the pages', () => {
    assert.deepEqual(pageErrors.map((e) => e.stack ?? e.message), []);
  });
});

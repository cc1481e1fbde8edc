// Headless Chromium for the console's end-to-end tests: Debian's browser, driven by playwright-core (which
// downloads none), against a real server; the checks every such test file starts with.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { webDist } from '../../src/api/web.js';
import { repoRoot } from '../../src/paths.js';
import { liveProcessCount } from '../../src/vm/processes.js';
import type { Config } from '../../src/config.js';
import { startTestServer, type TestServer } from './server.js';

export const chromiumPath = '/usr/bin/chromium';
export const screenshots = join(repoRoot, 'test-output', 'screenshots');

export interface ConsoleBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Uncaught errors of every page opened with openPage (and of `page`). */
  pageErrors: Error[];
  openPage(on?: BrowserContext): Promise<Page>;
}

/** Fails loudly without the browser or a built console; opens a 1280x800 page on `baseURL`. */
export async function openConsole(baseURL: string, timeoutMs: number): Promise<ConsoleBrowser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`${chromiumPath} is missing: the web console tests need Debian's chromium (apt-get install -y chromium); playwright-core downloads no browser`);
  }
  if (!existsSync(join(webDist, 'index.html'))) throw new Error(`${webDist}/index.html is missing: run npm run build`);
  mkdirSync(screenshots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL });
  context.setDefaultTimeout(timeoutMs);
  const pageErrors: Error[] = [];
  const openPage = async (on: BrowserContext = context) => {
    const opened = await on.newPage();
    opened.on('pageerror', (error) => pageErrors.push(error));
    return opened;
  };
  return { browser, context, page: await openPage(), pageErrors, openPage };
}

/** What a console test file works with: a real server and the browser on it. */
export interface ConsoleTest extends ConsoleBrowser {
  fnvm: TestServer;
}

/** A test file's `before`: a real server (default settings) and Chromium on it. */
export async function startConsoleTest(timeoutMs: number, overrides: Partial<Config> = {}): Promise<ConsoleTest> {
  const fnvm = await startTestServer(overrides);
  try {
    return { fnvm, ...(await openConsole(fnvm.url, timeoutMs)) };
  } catch (error) {
    await fnvm.stop();
    throw error;
  }
}

/** A test file's `after`: the browser and the server closed, and no QEMU process left behind. */
export async function stopConsoleTest(test: Partial<ConsoleTest>): Promise<void> {
  await test.browser?.close();
  await test.fnvm?.stop();
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
}

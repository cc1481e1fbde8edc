// The console's observability end to end: headless Chromium (Debian's, driven by playwright-core) against a real
// fnvm server with real microVMs and real invocations. A function page's charts and summary lines show what
// GET /v1/functions/{id}/metrics says (and the canvas really has the series drawn), the history and the charts
// follow new invocations without a reload (also across a dropped stream), the list shows each function's last
// hour from GET /v1/metrics, and the list page loads neither the editor's nor the charts' chunk.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { webDist } from '../src/api/web.js';
import { screenshots, startConsoleTest, stopConsoleTest, type ConsoleBrowser } from './support/browser.js';
import { deployReady, type TestServer } from './support/server.js';

/** Anything the page does: an API round trip, a render, a throttled re-read of the metrics (2 s). */
const uiMs = 20_000;
/** The list re-reads its figures every 10 s (invocations send no list event). */
const listRefreshMs = 25_000;

const code = `async function handler(event) {
  if (event.fail) throw new Error('asked to fail');
  return { ok: true, n: event.n };
}`;

let fnvm: TestServer;
let browser: Browser;
let page: Page;
let pageErrors: Error[] = [];
let openPage: ConsoleBrowser['openPage'];

before(async () => {
  ({ fnvm, browser, page, pageErrors, openPage } = await startConsoleTest(uiMs));
});

after(() => stopConsoleTest({ fnvm, browser }));

interface Totals {
  invocations: number;
  errors: number;
  timeouts: number;
  cold_starts: number;
  duration_ms: { p50: number | null; p95: number | null; p99: number | null; max: number | null; mean: number | null };
}
interface Metrics {
  step_seconds: number;
  points: Array<Totals & { time: string }>;
  total: Totals;
}

async function metricsOf(id: string, since: string, step: number): Promise<Metrics> {
  const answer = await fnvm.api(`/v1/functions/${id}/metrics?since=${since}&step=${step}`);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body as Metrics;
}

/** Invocations this file made, per function: what every figure is checked against. */
const made = new Map<string, { invocations: number; errors: number }>();

async function invoke(id: string, event: unknown): Promise<{ request_id: string; status: string }> {
  const answer = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event } });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  const counts = made.get(id) ?? { invocations: 0, errors: 0 };
  counts.invocations++;
  if (answer.body.status !== 'success') counts.errors++;
  made.set(id, counts);
  return answer.body as { request_id: string; status: string };
}

/** The console's formats (web/src/ui.tsx): a share with one decimal and no bare .0; ms with 2, 1 or 0 decimals. */
const shownRate = (rate: number) => `${Number.isInteger(rate * 100) ? rate * 100 : (rate * 100).toFixed(1)}%`;
const plural = (n: number, one: string) => `${n} ${n === 1 ? one : `${one}s`}`;
/** The summary line the counts chart must show for these totals. */
function countLine(total: Totals): RegExp {
  const errors = `${plural(total.errors, 'error')}${total.invocations > 0 ? ` \\(${shownRate(total.errors / total.invocations).replace('.', '\\.')}\\)` : ''}`;
  return new RegExp(`^${plural(total.invocations, 'invocation')} · ${errors}( · |$)`);
}

/** What a chart box says it holds (data-series: per series its label, values drawn and their sum). */
async function seriesOf(chart: Locator): Promise<Array<{ label: string; drawn: number; sum: number }>> {
  return JSON.parse((await chart.getAttribute('data-series')) ?? 'null') as Array<{ label: string; drawn: number; sum: number }>;
}

/**
 * Pixels of a series' colour on the chart's canvas, the colour read from its legend marker: what the user sees
 * drawn, not what the component was given.
 */
function seriesPixels(chart: Locator, label: string): Promise<number> {
  return chart.evaluate((box, seriesLabel) => {
    const rows = [...box.querySelectorAll('.u-legend .u-series')];
    const row = rows.find((candidate) => candidate.querySelector('.u-label')?.textContent === seriesLabel);
    const marker = row?.querySelector<HTMLElement>('.u-marker');
    if (!marker) throw new Error(`no legend entry ${seriesLabel}`);
    const rgb = /rgba?\((\d+), (\d+), (\d+)/.exec(getComputedStyle(marker).borderColor);
    if (!rgb) throw new Error(`legend colour of ${seriesLabel}: ${getComputedStyle(marker).borderColor}`);
    const [r, g, b] = [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
    const canvas = box.querySelector('canvas');
    const context2d = canvas?.getContext('2d');
    if (!canvas || !context2d) throw new Error('no chart canvas');
    const { data } = context2d.getImageData(0, 0, canvas.width, canvas.height);
    let count = 0;
    for (let i = 0; i < data.length; i += 4) {
      if ((data[i + 3] ?? 0) > 200 && Math.abs((data[i] ?? 0) - r) + Math.abs((data[i + 1] ?? 0) - g) + Math.abs((data[i + 2] ?? 0) - b) < 24) count++;
    }
    return count;
  }, label);
}

/** Waits until the count summary shows these totals (the page re-reads the metrics at most every 2 s). */
async function waitForCounts(on: Page, total: Totals): Promise<void> {
  await on.getByTestId('count-summary').filter({ hasText: countLine(total) }).waitFor();
}

/** The JS files of web/dist/assets and their sizes. */
function builtChunks(): Map<string, number> {
  const dir = join(webDist, 'assets');
  return new Map(readdirSync(dir).filter((name) => name.endsWith('.js')).map((name) => [name, statSync(join(dir, name)).size]));
}

/** Opens `path` in a fresh page and returns the JS chunks it fetched (names in web/dist/assets). */
async function chunksLoadedBy(path: string, ready: (on: Page) => Promise<void>): Promise<Set<string>> {
  const fresh = await openPage(await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: fnvm.url }));
  const loaded = new Set<string>();
  fresh.on('response', (response) => {
    const name = /\/assets\/([^/?]+\.js)$/.exec(new URL(response.url()).pathname)?.[1];
    if (name) loaded.add(name);
  });
  await fresh.goto(path);
  await ready(fresh);
  await fresh.waitForLoadState('networkidle').catch(() => {}); // event streams never idle; the chunks are in by then
  await fresh.context().close();
  return loaded;
}

const row = (on: Page, name: string): Locator => on.locator(`[data-testid="function-row"][data-name="${name}"]`);

describe('console observability', () => {
  let busy: { id: string; name: string };
  let quiet: { id: string; name: string };
  const ok = 5;
  const failing = 2;

  test('deploy two functions; invoke one through the API, successes and failures', async () => {
    busy = await deployReady(fnvm, { name: 'metrics-busy', runtime: 'node', code });
    quiet = await deployReady(fnvm, { name: 'metrics-quiet', runtime: 'node', code });
    for (let n = 0; n < ok; n++) assert.equal((await invoke(busy.id, { n })).status, 'success');
    for (let n = 0; n < failing; n++) assert.equal((await invoke(busy.id, { fail: true })).status, 'error');
    const { total } = await metricsOf(busy.id, '1h', 60);
    assert.equal(total.invocations, ok + failing, 'the API counts what was done');
    assert.equal(total.errors, failing);
  });

  test('a function without invocations: empty-state text, zero totals, nothing drawn', async () => {
    await page.goto(`/functions/${quiet.id}`);
    const counts = page.getByTestId('count-chart');
    await waitForCounts(page, (await metricsOf(quiet.id, '1h', 60)).total);
    assert.equal(await page.getByTestId('count-summary').innerText(), '0 invocations · 0 errors');
    assert.equal(await page.getByTestId('latency-summary').innerText(), 'No durations yet.');
    assert.equal(await page.getByText('No invocations in the last hour.').count(), 2, 'both charts say so');
    const series = await seriesOf(counts);
    assert.deepEqual(series.map((s) => [s.label, s.sum]), [['Invocations', 0], ['Errors', 0]]);
    assert.equal(await seriesPixels(counts, 'Invocations'), 0);
    assert.equal(await seriesPixels(counts, 'Errors'), 0);
    assert.equal(await seriesPixels(page.getByTestId('latency-chart'), 'p50'), 0);
  });

  test('the function page: summary lines equal the API totals, and the series are drawn', async () => {
    await page.goto(`/functions/${busy.id}`);
    const metrics = await metricsOf(busy.id, '1h', 60);
    const { total } = metrics;
    await waitForCounts(page, total);
    assert.match(await page.getByTestId('count-summary').innerText(), new RegExp(`^${ok + failing} invocations · ${failing} errors \\(28\\.6%\\)`));

    // Each percentile on the line is the API's, as the console formats it (to its shown precision).
    const latency = await page.getByTestId('latency-summary').innerText();
    for (const key of ['p50', 'p95', 'p99', 'max'] as const) {
      const shown = new RegExp(`${key} ([\\d.]+) (ms|s)`).exec(latency);
      assert.ok(shown?.[1], `${key} in "${latency}"`);
      const value = Number(shown[1]) * (shown[2] === 's' ? 1000 : 1);
      const exact = total.duration_ms[key];
      assert.ok(exact !== null && Math.abs(value - exact) <= Math.max(0.006, exact * 0.006), `${key}: shown ${value}, API ${exact}`);
    }

    // What the charts hold is the API's answer: one value per step, the counts adding up to the totals, a
    // duration for every step with invocations.
    const counts = page.getByTestId('count-chart');
    const withInvocations = metrics.points.filter((p) => p.invocations > 0).length;
    assert.deepEqual((await seriesOf(counts)).map((s) => [s.label, s.drawn, s.sum]),
      [['Invocations', metrics.points.length, total.invocations], ['Errors', metrics.points.length, total.errors]]);
    const latencySeries = await seriesOf(page.getByTestId('latency-chart'));
    assert.deepEqual(latencySeries.map((s) => [s.label, s.drawn]), [['p50', withInvocations], ['p99', withInvocations]]);

    // And it is on the canvas: bars of both colours (the empty chart above had none), points of both percentiles.
    assert.ok(await seriesPixels(counts, 'Invocations') > 20, 'invocation bars are drawn');
    assert.ok(await seriesPixels(counts, 'Errors') > 5, 'error bars are drawn');
    assert.ok(await seriesPixels(page.getByTestId('latency-chart'), 'p50') > 5, 'p50 is drawn');
    assert.ok(await seriesPixels(page.getByTestId('latency-chart'), 'p99') > 5, 'p99 is drawn');
    await page.getByTestId('count-chart').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(screenshots, 'metrics.png') });
  });

  test('an invocation made while the page is open: its history row and the chart count appear without a reload', async () => {
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'not reloaded'));
    const before = await seriesPixels(page.getByTestId('count-chart'), 'Invocations');
    const started = Date.now();
    const { request_id } = await invoke(busy.id, { n: 99 });
    const history = page.getByRole('table', { name: 'Invocation history' });
    await history.locator(`[data-testid="invocation-row"][data-request-id="${request_id}"]`).waitFor();
    const rowMs = Date.now() - started;
    assert.equal(await history.getByTestId('invocation-row').first().getAttribute('data-request-id'), request_id, 'on top');
    const { total } = await metricsOf(busy.id, '1h', 60);
    assert.equal(total.invocations, made.get(busy.id)?.invocations);
    await waitForCounts(page, total);
    const chartMs = Date.now() - started;
    assert.equal((await seriesOf(page.getByTestId('count-chart')))[0]?.sum, total.invocations);
    assert.ok(await seriesPixels(page.getByTestId('count-chart'), 'Invocations') >= before, 'the bar did not shrink');
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: string }).marker), 'not reloaded');
    assert.equal(await history.getByTestId('invocation-row').count(), 8, 'each record once');
    process.stderr.write(`live: history row ${rowMs} ms, chart ${chartMs} ms after the invoke\n`);
  });

  test('records committed while the stream is down appear once it reconnects, each once', async () => {
    const follows: number[] = [];
    const onRequest = (request: { url(): string }) => {
      if (request.url().includes('/logs?follow=true')) follows.push(Date.now());
    };
    page.on('request', onRequest);
    try {
      // The server drops every connection (as it drops a client that does not keep up); EventSource waits about
      // 3 s before it connects again, and both records are committed before that.
      fnvm.server.app.server.closeAllConnections();
      await page.getByTestId('live').filter({ hasText: 'reconnecting' }).waitFor();
      const missed = [await invoke(busy.id, { n: 100 }), await invoke(busy.id, { n: 101 })];
      const committed = Date.now();
      const history = page.getByRole('table', { name: 'Invocation history' });
      // Well before the stream's first keep-alive (15 s): the reload runs when the stream opens, not on its first byte.
      const reloaded = { timeout: 12_000 };
      for (const { request_id } of missed) await history.locator(`[data-testid="invocation-row"][data-request-id="${request_id}"]`).waitFor(reloaded);
      assert.ok(follows.some((at) => at > committed), 'the records were committed before the stream was back: they came from the reload');
      const shown = await history.getByTestId('invocation-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id')));
      assert.deepEqual(shown.slice(0, 2), missed.map((m) => m.request_id).reverse(), 'newest first');
      assert.equal(new Set(shown).size, shown.length, 'no duplicates');
      assert.equal(shown.length, 10, 'a full first page');
      await page.getByTestId('live').filter({ hasText: 'live' }).waitFor();
      await waitForCounts(page, (await metricsOf(busy.id, '1h', 60)).total);
    } finally {
      page.off('request', onRequest);
    }
  });

  test('paging while invocations keep coming: an older page is pushed down, pages neither repeat nor skip a record', async () => {
    while (made.get(busy.id)!.invocations < 22) await invoke(busy.id, { n: made.get(busy.id)!.invocations });
    const history = page.getByRole('table', { name: 'Invocation history' });
    const ids = () => history.getByTestId('invocation-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-request-id') ?? ''));
    const range = (text: string) => page.getByTestId('page-range').filter({ hasText: new RegExp(`^${text}$`) }).waitFor();
    const older = () => page.getByRole('button', { name: 'Older →' }).click();
    const newer = () => page.getByRole('button', { name: '← Newer' }).click();
    await range('1–10');
    await older();
    await range('11–20');
    const second = await ids();

    // Two records committed while the second page is shown push it down: the same rows, now the 13th to 22nd.
    await invoke(busy.id, { n: 300 });
    await invoke(busy.id, { n: 301 });
    await range('13–22');
    assert.deepEqual(await ids(), second, 'the rows shown stay');
    const kept = ((await fnvm.api(`/v1/functions/${busy.id}/logs?limit=100`)).body.items as Array<{ request_id: string }>).map((r) => r.request_id);
    assert.equal(kept.length, 24);
    assert.deepEqual(second, kept.slice(12, 22));

    await older();
    await range('23–24');
    assert.deepEqual(await ids(), kept.slice(22), 'older: right after the last row shown');
    await newer();
    await range('13–22');
    assert.deepEqual(await ids(), second, 'newer: right before the first row shown');
    await newer();
    await range('1–10');
    const pages = [await ids()];
    await older();
    await range('11–20');
    pages.push(await ids());
    await older();
    await range('21–24');
    pages.push(await ids());
    assert.deepEqual(pages.flat(), kept, 'the pages are the whole history, newest first, each record once');
    await newer();
    await range('11–20');
    await newer();
    await range('1–10');
  });

  test('the range switch: the last 24 hours in 5-minute steps, the same totals', async () => {
    await page.getByRole('button', { name: 'Last 24 hours' }).click();
    const metrics = await metricsOf(busy.id, '24h', 300);
    assert.equal(metrics.step_seconds, 300);
    await waitForCounts(page, metrics.total);
    assert.equal(await page.locator('figcaption').filter({ hasText: 'per 5 min' }).count(), 2, 'both charts say their step');
    const series = await seriesOf(page.getByTestId('count-chart'));
    assert.deepEqual(series.map((s) => [s.drawn, s.sum]), [[metrics.points.length, metrics.total.invocations], [metrics.points.length, metrics.total.errors]]);
    assert.equal(await page.getByRole('button', { name: 'Last 24 hours' }).getAttribute('aria-pressed'), 'true');
  });

  test('the list: each function\'s invocations and error rate of the last hour, as /v1/metrics says, kept current', async () => {
    await page.goto('/');
    const figures = async () => {
      const answer = await fnvm.api('/v1/metrics?since=1h');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body.items as Array<{ function_id: string; invocations: number; error_rate: number | null }>;
    };
    const expectRow = async (fn: { id: string; name: string }, timeout = uiMs) => {
      const item = (await figures()).find((f) => f.function_id === fn.id);
      const invocations = item?.invocations ?? 0;
      const rate = item?.error_rate ?? null;
      await row(page, fn.name).getByTestId('invocations-1h').filter({ hasText: new RegExp(`^${invocations}$`) }).waitFor({ timeout });
      assert.equal(await row(page, fn.name).getByTestId('error-rate-1h').innerText(), rate === null ? '—' : shownRate(rate));
      return { invocations, rate };
    };
    const seen = await expectRow(busy);
    const done = made.get(busy.id)!;
    assert.equal(seen.invocations, done.invocations);
    assert.equal(seen.rate, done.errors / done.invocations);
    assert.deepEqual(await expectRow(quiet), { invocations: 0, rate: null });

    // An invocation sends no list event: the figures come with the next periodic read, no reload.
    assert.equal((await invoke(busy.id, { fail: true })).status, 'error');
    const after = await expectRow(busy, listRefreshMs);
    assert.equal(after.invocations, done.invocations);
    assert.equal(after.rate, done.errors / done.invocations);
  });

  test('split bundle: the list page loads neither CodeMirror nor uPlot; a function page loads both', async () => {
    const all = builtChunks();
    const total = [...all.values()].reduce((a, b) => a + b, 0);
    const codemirror = [...all.keys()].filter((name) => name.startsWith('codemirror-'));
    const uplot = [...all.keys()].filter((name) => name.startsWith('uplot-'));
    assert.equal(codemirror.length, 1, `one CodeMirror chunk among ${[...all.keys()].join(', ')}`);
    assert.equal(uplot.length, 1, 'one uPlot chunk');

    const list = await chunksLoadedBy('/', (on) => row(on, busy.name).waitFor());
    const listBytes = [...list].reduce((sum, name) => sum + (all.get(name) ?? NaN), 0);
    assert.ok(!list.has(codemirror[0]!) && !list.has(uplot[0]!), `the list loaded ${[...list].join(', ')}`);
    assert.ok(listBytes < 0.4 * total, `the list page loads ${listBytes} of ${total} bytes of JS`);

    const detail = await chunksLoadedBy(`/functions/${busy.id}`, (on) => on.getByTestId('count-chart').waitFor());
    assert.ok(detail.has(codemirror[0]!) && detail.has(uplot[0]!), `the function page loaded ${[...detail].join(', ')}`);
    const detailBytes = [...detail].reduce((sum, name) => sum + (all.get(name) ?? NaN), 0);
    process.stderr.write(`JS: list page ${listBytes} B, function page ${detailBytes} B, all chunks ${total} B\n`);
    assert.deepEqual(pageErrors, []);
  });
});

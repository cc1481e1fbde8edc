// The function page's charts (a chunk of its own with uPlot): invocations and errors per step, p50 and p99
// duration, over the last hour or day, each with its summary line. Live: re-read (throttled) whenever the page's
// feed brings a record, so what is drawn is always what the API answered.
import { useCallback, useEffect, useMemo, useState } from 'react';
import uPlot, { type AlignedData } from 'uplot';
import { api } from './api';
import type { InvocationFeed } from './invocation-feed';
import { countColumns, countSummary, latencyColumns, latencySummary, localZone, ranges, type Range, type RangeKey } from './metrics-view';
import { ErrorBox, formatMs } from './ui';
import { UPlotChart, type ChartOptions } from './UPlotChart';
import { useRefreshing } from './use-refreshing';

/** Series colours (the legend shows them; the browser test counts their pixels on the canvas). */
const colours = { invocations: '#2f6fde', errors: '#d92d20', p50: '#12a150', p99: '#c26a00' } as const;
const chartHeight = 200;
const grid = { stroke: '#eef1f5', width: 1 };
const axis = { stroke: '#5f6b7a', grid, ticks: { stroke: '#d9dee5', width: 1 }, font: '11px system-ui, sans-serif', labelFont: '12px system-ui, sans-serif' };
/** Tick steps of a count axis: whole numbers only. */
const wholeSteps = [1, 2, 5].flatMap((m) => [1, 10, 100, 1000, 10_000, 100_000, 1_000_000].map((e) => m * e)).sort((a, b) => a - b);

const pad = (n: number) => String(n).padStart(2, '0');
/** A time tick: "14:05", or the date at midnight ("3 Dec"), in the browser's zone. */
function clockTick(seconds: number): string {
  const at = new Date(seconds * 1000);
  if (at.getHours() === 0 && at.getMinutes() === 0) return at.toLocaleDateString('en-GB', { day: 'numeric', month: 'short' });
  return `${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

function timeAxes(yLabel: string, yValue: (v: number) => string, incrs?: number[]): uPlot.Axis[] {
  return [
    { ...axis, label: `Local time (${localZone()})`, labelSize: 22, values: (_u, splits) => splits.map(clockTick) },
    { ...axis, label: yLabel, labelSize: 22, size: 56, values: (_u, splits) => splits.map(yValue), ...(incrs ? { incrs } : {}) },
  ];
}

/** x spans the whole range: each step's bar covers [start, start + step). */
const xScale = (range: Range): uPlot.Scale => ({ time: true, range: (_u, min, max) => [min, max + range.step] });

function countOptions(range: Range): ChartOptions {
  const bars = uPlot.paths.bars!({ align: 1, size: [0.8, 40, 1] });
  const count = (_u: uPlot, v: number | null) => (v === null ? '—' : v.toLocaleString('en'));
  return {
    scales: { x: xScale(range), y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] } },
    axes: timeAxes(`invocations / ${range.per}`, String, wholeSteps),
    series: [
      { label: 'Time', value: '{YYYY}-{MM}-{DD} {HH}:{mm}' },
      // Filled bars without an outline, so a step without invocations draws nothing; errors over invocations.
      { label: 'Invocations', stroke: colours.invocations, fill: colours.invocations, width: 0, paths: bars, points: { show: false }, value: count },
      { label: 'Errors', stroke: colours.errors, fill: colours.errors, width: 0, paths: bars, points: { show: false }, value: count },
    ],
  };
}

function latencyOptions(range: Range): ChartOptions {
  const ms = (_u: uPlot, v: number | null) => (v === null ? '—' : formatMs(v));
  const line = (label: string, stroke: string): uPlot.Series => ({ label, stroke, width: 2, spanGaps: false, points: { show: true, size: 5, fill: stroke }, value: ms });
  return {
    scales: { x: xScale(range), y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: timeAxes('duration (ms)', (v) => String(Number(v.toPrecision(3)))),
    series: [{ label: 'Time', value: '{YYYY}-{MM}-{DD} {HH}:{mm}' }, line('p50', colours.p50), line('p99', colours.p99)],
  };
}

export default function MetricsCharts({ functionId, feed }: { functionId: string; feed: InvocationFeed }) {
  const [rangeKey, setRangeKey] = useState<RangeKey>('hour');
  const range = ranges[rangeKey];
  const load = useCallback(() => api.metrics(functionId, range.since, range.step), [functionId, range]);
  // At most one read per 2 s however fast records come; every 30 s the window moves on.
  const { value: metrics, error, refresh } = useRefreshing(load, { throttleMs: 2000, intervalMs: 30_000 });
  useEffect(() => feed.subscribe({ onRecord: refresh, onOpen: refresh }), [feed, refresh]);

  const counts = useMemo(() => countOptions(range), [range]);
  const latency = useMemo(() => latencyOptions(range), [range]);
  const countData = useMemo(() => metrics && (countColumns(metrics) as AlignedData), [metrics]);
  const latencyData = useMemo(() => metrics && (latencyColumns(metrics) as AlignedData), [metrics]);
  const empty = metrics !== null && metrics.total.invocations === 0;

  return (
    <section className="card metrics" id="metrics" aria-labelledby="metrics-title">
      <div className="card-head">
        <h2 id="metrics-title">Metrics</h2>
        <div className="segmented" role="group" aria-label="Range">
          {(Object.keys(ranges) as RangeKey[]).map((key) => (
            <button key={key} type="button" aria-pressed={key === rangeKey} onClick={() => setRangeKey(key)}>{ranges[key].label}</button>
          ))}
        </div>
      </div>
      {error && <ErrorBox title="Could not load the metrics" error={error} />}
      <div className="charts">
        <figure className="chart-box" aria-label={`Invocations and errors per ${range.per}`}>
          <figcaption>Invocations and errors <span className="muted">per {range.per}</span></figcaption>
          <div className="chart-area">
            {countData ? <UPlotChart options={counts} data={countData} height={chartHeight} testId="count-chart" /> : <div className="chart-loading muted">Loading…</div>}
            {empty && <p className="chart-empty muted">No invocations in {range.span}.</p>}
          </div>
          <p className="chart-summary" data-testid="count-summary">{metrics ? countSummary(metrics.total) : '…'}</p>
        </figure>
        <figure className="chart-box" aria-label={`Duration p50 and p99 per ${range.per}`}>
          <figcaption>Duration <span className="muted">p50 and p99 per {range.per}</span></figcaption>
          <div className="chart-area">
            {latencyData ? <UPlotChart options={latency} data={latencyData} height={chartHeight} testId="latency-chart" /> : <div className="chart-loading muted">Loading…</div>}
            {empty && <p className="chart-empty muted">No invocations in {range.span}.</p>}
          </div>
          <p className="chart-summary" data-testid="latency-summary">{metrics ? latencySummary(metrics.total) ?? 'No durations yet.' : '…'}</p>
        </figure>
      </div>
    </section>
  );
}

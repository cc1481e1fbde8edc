// What the function page's charts show, from one answer of GET /v1/functions/{id}/metrics: the ranges, the
// series each chart draws and the summary line under it. Pure, so the chart and its summary come from the
// same numbers.
import type { FunctionMetrics, MetricsTotals } from './api';
import { formatMs, formatRate } from './ui';

export const ranges = {
  hour: { label: 'Last hour', since: '1h', step: 60, per: 'min', span: 'the last hour' },
  day: { label: 'Last 24 hours', since: '24h', step: 300, per: '5 min', span: 'the last 24 hours' },
} as const;
export type RangeKey = keyof typeof ranges;
export type Range = (typeof ranges)[RangeKey];

/** uPlot's columns: x (unix seconds of each step's start), then one array per series. */
export type Columns = [number[], ...Array<Array<number | null>>];

const times = (metrics: FunctionMetrics): number[] => metrics.points.map((point) => Date.parse(point.time) / 1000);

/** Invocations and errors per step. */
export function countColumns(metrics: FunctionMetrics): Columns {
  return [times(metrics), metrics.points.map((p) => p.invocations), metrics.points.map((p) => p.errors)];
}

/** p50 and p99 duration per step; null (a gap) where a step had no invocations. */
export function latencyColumns(metrics: FunctionMetrics): Columns {
  return [times(metrics), metrics.points.map((p) => p.duration_ms.p50), metrics.points.map((p) => p.duration_ms.p99)];
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;

/** "12 invocations · 2 errors (16.7%) · 1 timeout · 3 cold starts". */
export function countSummary(total: MetricsTotals): string {
  const parts = [plural(total.invocations, 'invocation')];
  parts.push(`${plural(total.errors, 'error')}${total.invocations > 0 ? ` (${formatRate(total.errors / total.invocations)})` : ''}`);
  if (total.timeouts > 0) parts.push(plural(total.timeouts, 'timeout'));
  if (total.cold_starts > 0) parts.push(plural(total.cold_starts, 'cold start'));
  return parts.join(' · ');
}

/** "p50 3.10 ms · p95 … · p99 8.20 ms · max …", or null without invocations. */
export function latencySummary(total: MetricsTotals): string | null {
  const { p50, p95, p99, max } = total.duration_ms;
  if (p50 === null || p95 === null || p99 === null || max === null) return null;
  return `p50 ${formatMs(p50)} · p95 ${formatMs(p95)} · p99 ${formatMs(p99)} · max ${formatMs(max)}`;
}

/** "UTC+02:00": the zone the time axis is drawn in (the browser's). */
export function localZone(at = new Date()): string {
  const minutes = -at.getTimezoneOffset();
  const abs = Math.abs(minutes);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `UTC${minutes < 0 ? '−' : '+'}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// The `since` and `step` of a metrics query, checked and turned into the range a store is read over.
import { invalid } from './errors.js';
import type { SeriesRange } from '../stats/series.js';
import { hour, maxRangeSeconds, minute, minuteRangeSeconds, type Resolution } from '../stats/resolutions.js';

/** Points a series may have. */
export const maxPoints = 1500;
const defaultSinceSeconds = 3600;
const unitSeconds: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
const sinceHelp = 'an ISO 8601 time with a zone (2026-12-01T10:00:00Z) or a duration back from now (15m, 1h, 24h, 30d)';
const isoDate = /^(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

/** `since` as unix milliseconds: default 1 h back; at most 30 days back; not in the future. */
export function parseSince(raw: string | undefined, nowMs: number): number {
  let sinceMs: number;
  if (raw === undefined || raw === '') sinceMs = nowMs - defaultSinceSeconds * 1000;
  else {
    const back = /^(\d{1,7})([mhd])$/.exec(raw);
    if (back) sinceMs = nowMs - Number(back[1]) * (unitSeconds[back[2] ?? ''] ?? NaN) * 1000;
    else sinceMs = parseIso(raw);
    if (!Number.isFinite(sinceMs)) throw invalid(`since must be ${sinceHelp}, got "${raw}"`);
  }
  if (sinceMs > nowMs) throw invalid(`since must not be in the future: ${raw ?? ''}`);
  if (sinceMs < nowMs - maxRangeSeconds * 1000) throw invalid(`since reaches back at most 30 days (30d), got "${raw ?? ''}"`);
  return sinceMs;
}

/** NaN unless an ISO 8601 date (UTC midnight) or date-time with a zone that names a real day. */
function parseIso(raw: string): number {
  const match = isoDate.exec(raw);
  if (!match) return NaN;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const calendar = new Date(Date.UTC(year, month - 1, day));
  if (calendar.getUTCMonth() !== month - 1 || calendar.getUTCDate() !== day) return NaN; // Date.parse takes Feb 31
  return Date.parse(raw);
}

/** `step` in seconds: seconds ("60") or a duration ("1m", "5m", "1h", "1d"); undefined when not given. */
function parseStep(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const match = /^(\d{1,9})([smhd]?)$/.exec(raw);
  const seconds = match ? Number(match[1]) * (unitSeconds[match[2] || 's'] ?? NaN) : NaN;
  if (!(seconds > 0)) throw invalid(`step must be a number of seconds (60) or a duration (1m, 5m, 1h, 1d), got "${raw}"`);
  return seconds;
}

/**
 * The range of a series: minute rows when it starts within the last 24 h and its step is at most 1 h (aligned
 * down, such a start is at most 25 h back, within the minute rows' retention), hour rows otherwise; the step
 * defaults to the resolution and must be a multiple of it; since is aligned down and now up to the step.
 */
export function seriesRange(rawSince: string | undefined, rawStep: string | undefined, nowMs: number): SeriesRange {
  const sinceMs = parseSince(rawSince, nowMs);
  const recent = sinceMs >= nowMs - minuteRangeSeconds * 1000;
  const given = parseStep(rawStep);
  const step = given ?? (recent ? minute : hour);
  const resolution: Resolution = recent && step <= hour ? minute : hour;
  if (step % resolution !== 0) {
    throw invalid(resolution === minute
      ? `step must be a multiple of 60 s (1m), got ${step} s`
      : `step must be a multiple of 3600 s (1h) for ${recent ? 'steps over 1 h' : 'a since more than 24 h back'} (read from hour rows), got ${step} s`);
  }
  const since = alignDown(sinceMs, step);
  const until = alignUp(nowMs, step);
  const points = (until - since) / step;
  if (points > maxPoints) throw invalid(`step ${step} s gives ${points} points over this range: at most ${maxPoints}; use a larger step`);
  return { since, until, step, resolution };
}

/** The range of totals: since aligned down and now up to the resolution (minutes within the last 24 h, else hours). */
export function totalsRange(rawSince: string | undefined, nowMs: number): { since: number; until: number; resolution: Resolution } {
  const sinceMs = parseSince(rawSince, nowMs);
  const resolution = sinceMs >= nowMs - minuteRangeSeconds * 1000 ? minute : hour;
  return { since: alignDown(sinceMs, resolution), until: alignUp(nowMs, resolution), resolution };
}

/** Unix seconds, multiples of `step` seconds (UTC: a 1d step starts at midnight UTC). */
const alignDown = (ms: number, step: number) => Math.floor(ms / 1000 / step) * step;
const alignUp = (ms: number, step: number) => Math.ceil(ms / 1000 / step) * step;

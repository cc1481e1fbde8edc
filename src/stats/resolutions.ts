// The two resolutions statistics are kept at, how long each is kept, and the buckets a time falls in.
// Every store keeps both: a minute row and an hour row per function per bucket with an invocation in it.

export type Resolution = 60 | 3600;
export const minute: Resolution = 60;
export const hour: Resolution = 3600;
export const resolutions: readonly Resolution[] = [minute, hour];

/**
 * How long rows are kept, seconds. Minute rows serve ranges that start within the last 24 h; a step of up to
 * 1 h aligns such a start down by less than an hour, so 25 h of them cover every range they serve.
 */
export const keptSeconds: Readonly<Record<Resolution, number>> = { 60: 25 * 3600, 3600: 31 * 86_400 };
/** Ranges that start at most this far back (and steps up to an hour) are served from minute rows. */
export const minuteRangeSeconds = 24 * 3600;
/** How far back a range may start. */
export const maxRangeSeconds = 30 * 86_400;

export function isResolution(value: number): value is Resolution {
  return value === minute || value === hour;
}

/** Start (unix seconds, UTC) of the bucket of `resolution` that holds the time `ms` (unix milliseconds). */
export function bucketStart(ms: number, resolution: Resolution): number {
  return Math.floor(ms / 1000 / resolution) * resolution;
}

/** Per resolution, the bucket start before which rows are past their retention at `nowMs`. */
export function retentionCutoff(nowMs: number, resolution: Resolution): number {
  return Math.floor(nowMs / 1000) - keptSeconds[resolution];
}

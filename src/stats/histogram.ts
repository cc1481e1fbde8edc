// Invocation durations as a fixed log-scale histogram: the same bins everywhere (every minute, hour, store and
// host), so histograms merge exactly by adding counts and a percentile of any merge has a known error.
//
// Bin 0 holds durations up to 2^-7 ms (~0.008 ms); bin k (1..216) holds (2^((k-1)/8 - 7), 2^(k/8 - 7)] ms, bounds
// a ratio r = 2^(1/8) apart, up to 2^20 ms (~17.5 min, beyond the 15 min timeout); the last bin holds the rest.
// A bin's estimate is 2*lo*hi/(lo+hi), whose relative error for any value in (lo, hi] is at most
// (r-1)/(r+1) = 4.33% (DDSketch's choice). So every percentile is within 4.33% of the exact one (nearest-rank
// definition: the ceil(q*n)-th smallest duration), clamped to the observed min and max, which can only bring
// it closer; below 0.008 ms the error is at most 0.008 ms instead. Bins are a format: changing them breaks rows
// already stored.

const binsPerOctave = 8;
const lowestExponent = -7;
const highestExponent = 20;
/** Bins: the underflow one, 8 per octave from 2^-7 to 2^20 ms, the overflow one. */
export const binCount = (highestExponent - lowestExponent) * binsPerOctave + 2;
const ratio = 2 ** (1 / binsPerOctave);
/** The largest duration counted, ms (~17.5 min): no invocation runs longer than its timeout of at most 15 min. */
export const maxCountedMs = 2 ** highestExponent;
/** The stated bound on a percentile's relative error (above 0.008 ms). */
export const relativeError = (ratio - 1) / (ratio + 1);

/** Counts per bin, dense (218 entries); Float64Array: counts of a month can pass 2^32 and stay exact to 2^53. */
export type Histogram = Float64Array;

export function emptyHistogram(): Histogram {
  return new Float64Array(binCount);
}

export function binOf(durationMs: number): number {
  if (!(durationMs > 2 ** lowestExponent)) return 0; // also NaN and negatives: nothing from a guest is trusted
  const bin = Math.ceil((Math.log2(durationMs) - lowestExponent) * binsPerOctave);
  return Math.min(bin, binCount - 1);
}

/** The value a bin stands for: the point of (lo, hi] with the smallest worst-case relative error. */
function estimateOf(bin: number): number {
  if (bin === 0) return 2 ** lowestExponent / 2;
  if (bin === binCount - 1) return Infinity; // clamped to the observed max
  const hi = 2 ** (bin / binsPerOctave + lowestExponent);
  const lo = hi / ratio;
  return (2 * lo * hi) / (lo + hi);
}

export function addTo(histogram: Histogram, durationMs: number, count = 1): void {
  const bin = binOf(durationMs);
  histogram[bin] = (histogram[bin] ?? 0) + count;
}

/** Adds `from` into `into`. */
export function mergeInto(into: Histogram, from: Histogram): void {
  for (let bin = 0; bin < binCount; bin++) into[bin] = (into[bin] ?? 0) + (from[bin] ?? 0);
}

/**
 * The estimate of the q-quantile (0 < q <= 1) of the `total` durations counted, clamped to [min, max]; null when
 * nothing was counted.
 */
export function quantile(histogram: Histogram, total: number, q: number, min: number, max: number): number | null {
  if (total <= 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let bin = 0; bin < binCount; bin++) {
    seen += histogram[bin] ?? 0;
    if (seen >= rank) return Math.min(max, Math.max(min, estimateOf(bin)));
  }
  return max; // counts short of total (a row written by hand): the largest value seen
}

/** Stored form: the non-empty bins as a flat JSON array of [bin, count, bin, count, ...], bins ascending. */
export function encodeHistogram(histogram: Histogram): string {
  const pairs: number[] = [];
  for (let bin = 0; bin < binCount; bin++) {
    const count = histogram[bin] ?? 0;
    if (count !== 0) pairs.push(bin, count);
  }
  return JSON.stringify(pairs);
}

/** Reads the stored form; throws on anything else (a corrupt row is not silently taken as empty). */
export function decodeHistogram(text: string): Histogram {
  const pairs: unknown = JSON.parse(text);
  if (!Array.isArray(pairs) || pairs.length % 2 !== 0) throw new Error('histogram: not a [bin, count, ...] array');
  const histogram = emptyHistogram();
  for (let i = 0; i < pairs.length; i += 2) {
    const bin: unknown = pairs[i];
    const count: unknown = pairs[i + 1];
    if (typeof bin !== 'number' || !Number.isInteger(bin) || bin < 0 || bin >= binCount) throw new Error(`histogram: bad bin ${String(bin)}`);
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) throw new Error(`histogram: bad count ${String(count)}`);
    histogram[bin] = (histogram[bin] ?? 0) + count;
  }
  return histogram;
}

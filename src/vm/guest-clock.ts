// Keeping guest clocks right. Two things go wrong without this module:
// - rate: under TCG the guest reads the host's TSC, so its kernel keeps time right only if it is told the
//   host's TSC frequency (tsc_early_khz). It is estimated from the host, then measured in a real guest against
//   the host's clock and cached (see QemuDriver); nothing machine-specific is hard-coded.
// - offset: a VM restored from a snapshot resumes the wall clock the snapshot holds. `renew` sets it, and the
//   watchdog's pings keep it within a few ms afterwards, NTP-style: the guest's reading is compared with the
//   midpoint of the host's send and receive times, and stepped by the difference when that is clearly off.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { dirname } from 'node:path';
import type { GuestChannel } from '../guest/channel.js';

/** One ping: the host's clock when it was sent and answered, and the guest's reading in between. */
export interface ClockSample {
  sentMs: number;
  receivedMs: number;
  guestMs: number;
}

export const roundTrip = (s: ClockSample) => s.receivedMs - s.sentMs;

/** Guest minus host at the ping's midpoint; the true offset is within roundTrip/2 (+1 ms of rounding) of it. */
export const offsetOf = (s: ClockSample) => s.guestMs - (s.sentMs + s.receivedMs) / 2;

type GuestClock = 'wall' | 'monotonic';

/**
 * One ping. `wall`: Date.now() on both sides, the clocks users read; `monotonic`: the host's performance.now()
 * against the guest's CLOCK_MONOTONIC, which no clock step touches (for rates).
 */
async function sample(channel: GuestChannel, clock: GuestClock, timeoutMs: number): Promise<ClockSample> {
  const now = clock === 'wall' ? Date.now : () => performance.now();
  const sentMs = now();
  const pong = await channel.request('ping', {}, timeoutMs);
  return { sentMs, receivedMs: now(), guestMs: clock === 'wall' ? pong.time_ms : pong.monotonic_ms };
}

export const sampleWallClock = (channel: GuestChannel, timeoutMs: number) => sample(channel, 'wall', timeoutMs);

/**
 * The lowest-round-trip of up to `tries` samples, stopping early at one of `goodEnoughMs` or less. Right after
 * a restore the guest runs slowly (TCG translates its code afresh, pages fault in), so a single ping can be
 * tens of ms late either way.
 */
export async function bestSample(
  channel: GuestChannel,
  options: { clock: GuestClock; tries: number; timeoutMs: number; goodEnoughMs: number },
): Promise<ClockSample> {
  let best = await sample(channel, options.clock, options.timeoutMs);
  for (let i = 1; i < options.tries && roundTrip(best) > options.goodEnoughMs; i++) {
    const next = await sample(channel, options.clock, options.timeoutMs);
    if (roundTrip(next) < roundTrip(best)) best = next;
  }
  return best;
}

/** Steps a guest clock off by more than this (beyond the sample's own uncertainty). */
const toleranceMs = 2;
/**
 * A sample with a longer round trip pins the offset down only to half of it: too loose to act on, given that
 * the promise is 50 ms (a step decided on such a sample leaves at most 40/2 + 1 + 2 + 20 ms of error).
 */
export const usableRoundTripMs = 40;

/**
 * Corrects the guest's wall clock from a sample if it is clearly off. Returns the offset it corrected, or
 * null if none was needed (or the sample was too uncertain to act on).
 */
export async function discipline(channel: GuestChannel, sample: ClockSample): Promise<number | null> {
  const offset = offsetOf(sample);
  const rtt = roundTrip(sample);
  if (rtt > usableRoundTripMs || Math.abs(offset) <= rtt / 2 + 1 + toleranceMs) return null;
  await channel.request('clock', { adjust_ms: -offset }, 10_000);
  return offset;
}

/**
 * The guest's clock rate relative to the host's (1 = right), from the lowest-round-trip of 16 pings at each
 * end of `windowMs`, on CLOCK_MONOTONIC. `uncertainty` bounds the error.
 */
export async function measureClockRate(channel: GuestChannel, windowMs: number): Promise<{ ratio: number; uncertainty: number }> {
  const best = () => bestSample(channel, { clock: 'monotonic', tries: 16, timeoutMs: 5000, goodEnoughMs: 0 });
  const start = await best();
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const end = await best();
  const hostElapsed = (end.sentMs + end.receivedMs) / 2 - (start.sentMs + start.receivedMs) / 2;
  return {
    ratio: (end.guestMs - start.guestMs) / hostElapsed,
    uncertainty: (roundTrip(start) + roundTrip(end)) / 2 / hostElapsed,
  };
}

/** What the guest kernel is told its TSC runs at, and whether a guest has confirmed it. */
export interface TscSetting {
  khz: number;
  verified: boolean;
}

/** The host's TSC frequency as the host reports it; a starting point that measureClockRate then checks. */
export function estimateHostTscKhz(cpuinfo = readCpuinfo()): number {
  // "cpu MHz" is the TSC rate where the TSC is invariant and its frequency known (VMs, most servers).
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  if (/\bconstant_tsc\b/.test(flags) && mhz > 100) return Math.round(mhz * 1000);
  return 2_000_000;
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/** Measurements are kept per host: its kernel and CPU model. */
function hostKey(): string {
  return `${release()}|${cpus()[0]?.model ?? 'unknown cpu'}`;
}

export function loadTscSetting(cacheFile: string): TscSetting {
  try {
    if (existsSync(cacheFile)) {
      const cached: unknown = JSON.parse(readFileSync(cacheFile, 'utf8'));
      if (isCachedSetting(cached) && cached.key === hostKey()) return { khz: cached.khz, verified: cached.verified };
    }
  } catch {
    // unreadable cache: measure again
  }
  return { khz: estimateHostTscKhz(), verified: false };
}

export async function saveTscSetting(cacheFile: string, setting: TscSetting): Promise<void> {
  await mkdir(dirname(cacheFile), { recursive: true });
  await writeFile(cacheFile, JSON.stringify({ key: hostKey(), ...setting }));
}

function isCachedSetting(value: unknown): value is TscSetting & { key: string } {
  if (typeof value !== 'object' || value === null) return false;
  const { key, khz, verified } = value as Record<string, unknown>;
  return typeof key === 'string' && typeof khz === 'number' && Number.isInteger(khz) && khz > 0 && typeof verified === 'boolean';
}

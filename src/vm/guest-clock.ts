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

/** Wall-clock sample: Date.now() on both sides, the clocks users read. */
export async function sampleWallClock(channel: GuestChannel, timeoutMs: number): Promise<ClockSample> {
  const sentMs = Date.now();
  const pong = await channel.request('ping', {}, timeoutMs);
  return { sentMs, receivedMs: Date.now(), guestMs: pong.time_ms };
}

/** A round trip this short pins the offset down well enough: no need to ping again. */
const goodRoundTripMs = 4;

/**
 * The lowest-round-trip of up to `tries` wall-clock samples. Right after a restore the guest runs slowly (TCG
 * translates its code afresh, pages fault in), so a single ping can be tens of ms late either way.
 */
export async function bestWallSample(channel: GuestChannel, tries: number, timeoutMs: number): Promise<ClockSample> {
  let best = await sampleWallClock(channel, timeoutMs);
  for (let i = 1; i < tries && roundTrip(best) > goodRoundTripMs; i++) {
    const sample = await sampleWallClock(channel, timeoutMs);
    if (roundTrip(sample) < roundTrip(best)) best = sample;
  }
  return best;
}

/** Steps a guest clock off by more than this (beyond the sample's own uncertainty). */
const toleranceMs = 2;
/** Samples with a longer round trip say too little about the offset to act on. */
const maxRoundTripMs = 200;

/**
 * Corrects the guest's wall clock from a sample if it is clearly off. Returns the offset it corrected, or
 * null if none was needed (or the sample was too uncertain).
 */
export async function discipline(channel: GuestChannel, sample: ClockSample): Promise<number | null> {
  const offset = offsetOf(sample);
  const rtt = roundTrip(sample);
  if (rtt > maxRoundTripMs || Math.abs(offset) <= rtt / 2 + 1 + toleranceMs) return null;
  await channel.request('clock', { adjust_ms: -offset }, 10_000);
  return offset;
}

/**
 * The guest's clock rate relative to the host's (1 = right), from the lowest-round-trip of a few pings at
 * each end of `windowMs`, on CLOCK_MONOTONIC (which no clock step touches). `uncertainty` bounds the error.
 */
export async function measureClockRate(channel: GuestChannel, windowMs: number): Promise<{ ratio: number; uncertainty: number }> {
  const best = async (): Promise<ClockSample> => {
    let chosen: ClockSample | null = null;
    for (let i = 0; i < 16; i++) {
      const sentMs = performance.now();
      const pong = await channel.request('ping', {}, 5000);
      const sample = { sentMs, receivedMs: performance.now(), guestMs: pong.monotonic_ms };
      if (!chosen || roundTrip(sample) < roundTrip(chosen)) chosen = sample;
    }
    return chosen!;
  };
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

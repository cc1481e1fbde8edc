// Prometheus metrics (prom-client) for one server: per function (label `function` = its name) and per host.
// Counters and histograms follow the domain's and the driver's events; gauges are read at scrape time.
// Cardinality stays bounded: a deleted function's series go, and a renamed one's move to the new name.
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AsyncOutcome, QueueFigures } from '../functions/async-queue.js';
import type { FunctionChange, FunctionService } from '../functions/service.js';
import type { InvocationStatus } from '../store/types.js';
import type { VmDriver } from '../vm/driver.js';
import type { VmPool } from '../vm/pool.js';

export interface MetricsSources {
  service: FunctionService;
  pool: VmPool;
  driver: VmDriver;
}

const statuses: readonly InvocationStatus[] = ['success', 'error', 'timeout'];
const outcomes = ['ready', 'error'] as const;
const asyncOutcomes: readonly AsyncOutcome[] = ['accepted', 'succeeded', 'retried', 'dead', 'redriven'];
/** Invocation durations, s: 0.5 ms (a bare warm invoke is ~2 ms) up to the 15 min timeout. */
const invokeBuckets = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
/** Deployments, s: 20 ms (a warm pool code load) up to minutes (a cold boot under TCG). */
const deployBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const restoreBuckets = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class PrometheusMetrics {
  readonly registry = new Registry();
  /** Function id -> the name its series carry. */
  private readonly names = new Map<string, string>();
  private readonly perFunction: Array<{ remove: (name: string) => void }> = [];

  constructor({ service, pool, driver }: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'fnvm_' });

    const invocations = new Counter({ name: 'fnvm_invocations_total', help: 'Invocations, by final status', labelNames: ['function', 'status'], registers });
    const duration = new Histogram({
      name: 'fnvm_invocation_duration_seconds',
      help: 'Invocation duration measured by the host: from the invoke call to the guest\'s answer',
      labelNames: ['function'],
      buckets: invokeBuckets,
      registers,
    });
    const coldStarts = new Counter({ name: 'fnvm_cold_starts_total', help: 'Invocations that had to wait for a VM (asleep, or being replaced)', labelNames: ['function'], registers });
    const throttles = new Counter({ name: 'fnvm_throttles_total', help: 'Invocations refused with 429: the function was at its max_concurrency', labelNames: ['function'], registers });
    const deploys = new Histogram({
      name: 'fnvm_deploy_duration_seconds',
      help: 'Deployments, from being asked for to ready or error (waiting for a deploy slot included)',
      labelNames: ['function', 'outcome'],
      buckets: deployBuckets,
      registers,
    });
    const names = this.names;
    new Gauge({
      name: 'fnvm_invocations_in_flight',
      help: 'Invocations running now',
      labelNames: ['function'],
      registers,
      collect() {
        this.reset();
        for (const record of service.list()) this.set({ function: record.name }, service.inflight(record.id));
      },
    });
    new Gauge({
      name: 'fnvm_functions',
      help: 'Functions, by state',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const state of ['creating', 'booting', 'deploying', 'ready', 'error']) this.set({ state }, 0);
        for (const record of service.list()) this.inc({ state: record.state });
      },
    });

    // Asynchronous invocations: the queue as it is now (read at scrape time) and what happened to events.
    const queueGauge = (name: string, help: string, value: (figures: QueueFigures, now: number) => number) => new Gauge({
      name, help, labelNames: ['function'], registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const record of service.list()) this.set({ function: record.name }, value(service.queueFigures(record.id), now));
      },
    });
    queueGauge('fnvm_async_queue_depth', 'Asynchronous events accepted and not yet settled (waiting or running)', (f) => f.queued);
    queueGauge('fnvm_async_oldest_event_age_seconds', 'Age of the oldest queued asynchronous event (0 when none)', (f, now) => (f.oldest_queued_at === null ? 0 : (now - f.oldest_queued_at) / 1000));
    queueGauge('fnvm_async_dead_letters', 'Asynchronous events that gave up, kept in the dead-letter list', (f) => f.dead_letters);
    const asyncEvents = new Counter({ name: 'fnvm_async_events_total', help: 'Asynchronous events, by what happened: accepted, succeeded, retried, dead, redriven', labelNames: ['function', 'outcome'], registers });
    service.activity.on('async', ({ name, outcome }) => asyncEvents.inc({ function: name, outcome }));

    service.activity.on('invocation', ({ record, name, hostMs }) => {
      invocations.inc({ function: name, status: record.status });
      duration.observe({ function: name }, hostMs / 1000);
      if (record.cold_start) coldStarts.inc({ function: name });
    });
    service.activity.on('throttled', ({ name }) => throttles.inc({ function: name }));
    service.activity.on('deployed', ({ name, ms, outcome }) => deploys.observe({ function: name, outcome }, ms / 1000));
    this.perFunction.push(
      { remove: (name) => statuses.forEach((status) => invocations.remove({ function: name, status })) },
      { remove: (name) => duration.remove({ function: name }) },
      { remove: (name) => coldStarts.remove({ function: name }) },
      { remove: (name) => throttles.remove({ function: name }) },
      { remove: (name) => outcomes.forEach((outcome) => deploys.remove({ function: name, outcome })) },
      { remove: (name) => asyncOutcomes.forEach((outcome) => asyncEvents.remove({ function: name, outcome })) },
    );
    for (const record of service.list()) names.set(record.id, record.name);
    service.changes.on('change', (change: FunctionChange) => this.follow(change));

    const replacements = new Counter({ name: 'fnvm_vm_replacements_total', help: 'Serving VMs stopped and replaced, by cause', labelNames: ['cause'], registers });
    for (const cause of ['timeout', 'oom', 'crash', 'hang', 'protocol']) replacements.inc({ cause }, 0);
    service.activity.on('replaced', ({ cause }) => replacements.inc({ cause }));

    const boots = new Counter({ name: 'fnvm_vm_boots_total', help: 'VMs cold-booted (base snapshots are made from them)', registers });
    const restores = new Histogram({
      name: 'fnvm_vm_restore_duration_seconds',
      help: 'VMs restored from a snapshot (warm pool refills, function wakes), by priority',
      labelNames: ['priority'],
      buckets: restoreBuckets,
      registers,
    });
    driver.events.on('booted', () => boots.inc());
    driver.events.on('restored', ({ ms, background }) => restores.observe({ priority: background ? 'background' : 'urgent' }, ms / 1000));

    new Gauge({
      name: 'fnvm_vms',
      help: 'VMs whose process is alive, by runtime and state',
      labelNames: ['runtime', 'state'],
      registers,
      collect() {
        this.reset();
        for (const vm of driver.liveVms()) this.inc({ runtime: vm.spec.runtime, state: vm.state });
      },
    });
    new Gauge({
      name: 'fnvm_guest_memory_bytes',
      help: 'Memory of live VMs: configured for their guests, and resident in their QEMU processes',
      labelNames: ['runtime', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const vm of driver.liveVms()) {
          this.inc({ runtime: vm.spec.runtime, kind: 'configured' }, vm.spec.memoryMb * 2 ** 20);
          this.inc({ runtime: vm.spec.runtime, kind: 'resident' }, vm.pid === undefined ? 0 : residentBytes(vm.pid));
        }
      },
    });
    new Gauge({
      name: 'fnvm_warm_pool_vms',
      help: 'Idle VMs in the warm pool, by runtime',
      labelNames: ['runtime'],
      registers,
      collect() {
        this.reset();
        for (const { spec, idle } of pool.idleBySpec()) this.inc({ runtime: spec.runtime }, idle);
      },
    });
    new Gauge({
      name: 'fnvm_live_function_vms',
      help: 'Functions holding a VM now, and the cap (FNVM_MAX_LIVE_VMS)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.set({ kind: 'live' }, service.liveVms.live);
        this.set({ kind: 'max' }, service.liveVms.max);
      },
    });
    const accelerator = new Gauge({ name: 'fnvm_accelerator_info', help: 'The accelerator VMs run under (1 for the one in use)', labelNames: ['accelerator', 'driver'], registers });
    accelerator.set({ accelerator: driver.accel, driver: driver.name }, 1);
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  private follow(change: FunctionChange): void {
    if ('deleted' in change) {
      const name = this.names.get(change.deleted);
      this.names.delete(change.deleted);
      if (name !== undefined) this.forget(name);
      return;
    }
    const before = this.names.get(change.item.id);
    if (before !== undefined && before !== change.item.name) this.forget(before);
    this.names.set(change.item.id, change.item.name);
  }

  private forget(name: string): void {
    for (const metric of this.perFunction) metric.remove(name);
  }
}

/** A process's resident memory (VmRSS), 0 if it is gone. */
function residentBytes(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

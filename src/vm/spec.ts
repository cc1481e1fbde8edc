// What a caller asks of a VM. Knows nothing about functions.
import type { Runtime } from '../guest/protocol.js';

export type NetworkMode = 'none' | 'outbound';
export type Accelerator = 'kvm' | 'tcg';

export interface VmSpec {
  runtime: Runtime;
  vcpu: number;
  memoryMb: number;
  network: NetworkMode;
}

export const specLimits = { vcpu: { min: 1, max: 8 }, memoryMb: { min: 128, max: 4096 } } as const;

export class VmSpecError extends Error {
  override name = 'VmSpecError';
}

export function checkSpec(spec: VmSpec): VmSpec {
  const { vcpu, memoryMb } = specLimits;
  if (!Number.isInteger(spec.vcpu) || spec.vcpu < vcpu.min || spec.vcpu > vcpu.max) {
    throw new VmSpecError(`vcpu must be an integer from ${vcpu.min} to ${vcpu.max}`);
  }
  if (!Number.isInteger(spec.memoryMb) || spec.memoryMb < memoryMb.min || spec.memoryMb > memoryMb.max) {
    throw new VmSpecError(`memory_mb must be an integer from ${memoryMb.min} to ${memoryMb.max}`);
  }
  if (spec.runtime !== 'node' && spec.runtime !== 'python') throw new VmSpecError(`unknown runtime ${String(spec.runtime)}`);
  if (spec.network !== 'none' && spec.network !== 'outbound') throw new VmSpecError(`unknown network mode ${String(spec.network)}`);
  return spec;
}

/** Two VMs with the same shape can stand in for each other (pool, snapshots). */
export function specKey(spec: VmSpec): string {
  return `${spec.runtime}-${spec.vcpu}c-${spec.memoryMb}m-${spec.network}`;
}

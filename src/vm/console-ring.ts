// A guest's serial console, kept in host memory: the last `capacity` bytes, however much the guest prints.
// The host drains the console socket as fast as QEMU writes, so a guest flooding it never blocks on us and
// never costs disk; diagnose() reads the tail after a crash.
import type { Socket } from 'node:net';

export const consoleRingBytes = 1024 * 1024;

export class ConsoleRing {
  // One preallocated buffer written round and round: memory is the capacity, however the guest writes
  // (a UART delivers bytes in tiny chunks, and a list of them would cost far more than their bytes).
  private readonly ring: Buffer;
  private end = 0; // where the next byte goes
  private total = 0;
  private ended: Promise<void> = Promise.resolve();

  constructor(private readonly capacity = consoleRingBytes) {
    this.ring = Buffer.alloc(capacity);
  }

  /** Bytes the guest wrote in all (the ring keeps only the last `capacity`). */
  get received(): number {
    return this.total;
  }

  /** Bytes held now: never more than the capacity. */
  get size(): number {
    return Math.min(this.total, this.capacity);
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let piece = chunk.subarray(Math.max(0, chunk.length - this.capacity));
    while (piece.length > 0) {
      const copied = piece.copy(this.ring, this.end);
      this.end = (this.end + copied) % this.capacity;
      piece = piece.subarray(copied);
    }
  }

  /** The last `bytes` bytes as text (a character cut at the start becomes U+FFFD). */
  tail(bytes: number): string {
    const size = this.size;
    const ordered = size < this.capacity
      ? this.ring.subarray(0, size)
      : Buffer.concat([this.ring.subarray(this.end), this.ring.subarray(0, this.end)]);
    return ordered.subarray(Math.max(0, ordered.length - bytes)).toString('utf8');
  }

  /** Reads `socket` until it closes; its errors only end the reading (the console is not the VM's lifeline). */
  drain(socket: Socket): void {
    this.ended = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.push(chunk));
    socket.on('error', () => socket.destroy());
  }

  /** Resolves once the socket closed (all it carried is in the ring), or after `ms` at most. */
  drained(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    return Promise.race([this.ended, late]).finally(() => clearTimeout(timer));
  }
}

// A guest's serial console, kept in host memory: the last `capacity` bytes, however much the guest prints.
// The host drains the console socket as fast as QEMU writes, so a guest flooding it never blocks on us and
// never costs disk; diagnose() reads the tail after a crash.
import type { Socket } from 'node:net';

export const consoleRingBytes = 1024 * 1024;

export class ConsoleRing {
  private chunks: Buffer[] = [];
  private kept = 0;
  private total = 0;
  private ended: Promise<void> = Promise.resolve();

  constructor(private readonly capacity = consoleRingBytes) {}

  /** Bytes the guest wrote in all (the ring keeps only the last `capacity`). */
  get received(): number {
    return this.total;
  }

  /** Bytes held now: never more than the capacity. */
  get size(): number {
    return this.kept;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    // Copy only what is kept: a socket chunk may be a view of a much larger buffer.
    const piece = Buffer.from(chunk.subarray(Math.max(0, chunk.length - this.capacity)));
    this.chunks.push(piece);
    this.kept += piece.length;
    while (this.kept > this.capacity) {
      const first = this.chunks[0]!;
      const excess = this.kept - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.kept -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.kept -= excess;
      }
    }
  }

  /** The last `bytes` bytes as text (a character cut at the start becomes U+FFFD). */
  tail(bytes: number): string {
    const all = Buffer.concat(this.chunks, this.kept);
    this.chunks = all.length ? [all] : [];
    return all.subarray(Math.max(0, all.length - bytes)).toString('utf8');
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

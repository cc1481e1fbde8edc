// Length-prefixed JSON frames: [u32 big-endian length][UTF-8 JSON]. Safer than newlines for 6 MB payloads.
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export class FrameError extends Error {
  override name = 'FrameError';
}

export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length > MAX_FRAME_BYTES) throw new FrameError(`frame of ${body.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/** Accumulates stream chunks and yields each complete decoded frame. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): unknown[] {
    return this.pushSized(chunk).map((frame) => frame.value);
  }

  /** Like push, with each frame's body, the JSON text (the host bounds what a guest's reply may carry). */
  pushSized(chunk: Buffer): Array<{ value: unknown; body: Buffer }> {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Array<{ value: unknown; body: Buffer }> = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) throw new FrameError(`incoming frame of ${length} bytes exceeds ${MAX_FRAME_BYTES}`);
      if (this.buffered < 4 + length) break;
      const body = this.take(4 + length).subarray(4);
      frames.push({ value: JSON.parse(body.toString('utf8')), body });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0] && this.chunks[0].length >= n) return this.chunks[0];
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

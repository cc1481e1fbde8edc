// Host side of the guest protocol over any byte stream: ids, multiplexing, per-request deadlines.
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder } from './framing.js';
import type { ErrorInfo, Reply, RequestMap, RequestType } from './protocol.js';

/** The agent answered `ok: false` (load failed, unknown request...). */
export class GuestRequestError extends Error {
  override name = 'GuestRequestError';
  constructor(readonly info: ErrorInfo) {
    super(info.message);
  }
}

/** The channel closed or broke before a reply arrived. */
export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
}

/** No reply within the caller's deadline. */
export class ChannelTimeoutError extends Error {
  override name = 'ChannelTimeoutError';
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export class GuestChannel {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder();
  private closedError: Error | null = null;
  private readonly closeListeners: Array<(error: Error) => void> = [];
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (error) => this.fail(new ChannelClosedError(`guest channel error: ${error.message}`)));
    stream.on('close', () => this.fail(new ChannelClosedError('guest channel closed')));
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** Resolves when no request is in flight (now, or once the last one settles). */
  idle(): Promise<void> {
    if (this.pending.size === 0 || this.closedError) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Called once when the channel breaks; in-flight requests are rejected with the same error. */
  onClose(listener: (error: Error) => void): void {
    if (this.closedError) listener(this.closedError);
    else this.closeListeners.push(listener);
  }

  request<T extends RequestType>(
    type: T,
    params: RequestMap[T]['params'],
    timeoutMs?: number,
  ): Promise<RequestMap[T]['result']> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(id);
              reject(new ChannelTimeoutError(`guest did not answer ${type} within ${timeoutMs} ms`));
            }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      // id first: an agent that cannot parse a frame (too deep, broken) still reads the id and answers.
      this.stream.write(encodeFrame({ id, type, ...params }));
    });
  }

  close(): void {
    this.stream.destroy();
    this.fail(new ChannelClosedError('guest channel closed by host'));
  }

  private onData(chunk: Buffer): void {
    let frames: unknown[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.stream.destroy();
      this.fail(new ChannelClosedError(`guest protocol error: ${(error as Error).message}`));
      return;
    }
    for (const frame of frames) this.onReply(frame as Reply);
  }

  private onReply(reply: Reply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return; // the caller gave up on it (deadline)
    this.settled(reply.id);
    clearTimeout(pending.timer);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(new GuestRequestError(reply.error));
  }

  private settled(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const [, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
    this.settled(0);
    for (const listener of this.closeListeners.splice(0)) listener(error);
  }
}

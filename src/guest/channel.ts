// Host side of the guest protocol over any byte stream: ids, multiplexing, per-request deadlines.
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder } from './framing.js';
import type { ErrorInfo, RequestMap, RequestType } from './protocol.js';
import { checkReply, ProtocolViolation, resultCheckers, type CheckedReply } from './validate.js';

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

/**
 * The guest sent something the protocol does not allow (malformed frame, wrong shape, a reply to an id that
 * is not pending): the guest is hostile or broken, so the channel is dropped and every request fails.
 */
export class GuestProtocolError extends ChannelClosedError {
  override name = 'GuestProtocolError';
}

/** No reply within the caller's deadline. */
export class ChannelTimeoutError extends Error {
  override name = 'ChannelTimeoutError';
}

/** Ids given up on (deadline) whose late replies are still legitimate; older ones count as forged. */
const rememberedTimeouts = 1024;

interface Pending {
  /** Checks the ok result against the request type's shape, then resolves; throws ProtocolViolation. */
  settle: (result: unknown, frame: Buffer) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

export class GuestChannel {
  private nextId = 1;
  /** The stream is corked until the end of this turn of the event loop (see send). */
  private corked = false;
  private readonly pending = new Map<number, Pending>();
  private readonly timedOut = new Set<number>();
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
              this.settled(id);
              this.rememberTimeout(id);
              reject(new ChannelTimeoutError(`guest did not answer ${type} within ${timeoutMs} ms`));
            }, timeoutMs);
      const check = resultCheckers[type];
      this.pending.set(id, { settle: (result, frame) => resolve(check(result, frame)), reject, timer });
      // id first: an agent that cannot parse a frame (too deep, broken) still reads the id and answers.
      this.send(encodeFrame({ id, type, ...params }));
    });
  }

  /**
   * Frames of one turn of the event loop (the requests of every HTTP request read in it) leave in one write:
   * under load that is one syscall and one guest wake-up for many, and a lone request waits only for the turn.
   */
  private send(frame: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      setImmediate(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    this.stream.write(frame);
  }

  close(): void {
    this.stream.destroy();
    this.fail(new ChannelClosedError('guest channel closed by host'));
  }

  private onData(chunk: Buffer): void {
    if (this.closedError) return;
    try {
      for (const frame of this.decoder.pushSized(chunk)) this.onReply(checkReply(frame.value), frame.body);
    } catch (error) {
      // FrameError (oversize), SyntaxError (not JSON), ProtocolViolation: the stream can no longer be trusted.
      this.stream.destroy();
      this.fail(new GuestProtocolError(`guest protocol violation: ${error instanceof Error ? error.message : String(error)}`));
    }
  }

  private onReply(reply: CheckedReply, frame: Buffer): void {
    const pending = this.pending.get(reply.id);
    if (!pending) {
      if (this.timedOut.delete(reply.id)) return; // a straggler for a request whose deadline passed
      throw new ProtocolViolation(`reply to id ${reply.id}, which is not pending (forged, duplicate or late)`);
    }
    clearTimeout(pending.timer);
    if (reply.ok) pending.settle(reply.result, frame); // a bad shape throws before anything resolves
    else pending.reject(new GuestRequestError(reply.error));
    this.settled(reply.id);
  }

  private rememberTimeout(id: number): void {
    this.timedOut.add(id);
    if (this.timedOut.size <= rememberedTimeouts) return;
    const oldest = this.timedOut.values().next().value; // sets iterate in insertion order
    if (oldest !== undefined) this.timedOut.delete(oldest);
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

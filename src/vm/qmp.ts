// Minimal QMP client (QEMU Machine Protocol): JSON lines, commands matched by id, events to listeners.
import type { Socket } from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export class QmpError extends Error {
  override name = 'QmpError';
}

/** QEMU's own lines are small; one this long without a newline means the connection is broken. */
export const maxQmpLineChars = 1024 * 1024;

type Waiter = { resolve: (value: unknown) => void; reject: (error: Error) => void };

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly waiters = new Map<string, Waiter>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();
  private greeted: Promise<void>;
  private closed: Error | null = null;

  constructor(private readonly socket: Socket) {
    let greet: () => void;
    this.greeted = new Promise((resolve) => (greet = resolve));
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      if (this.closed) return;
      this.buffer += text;
      let newline: number;
      while ((newline = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        if (!line) continue;
        const message = parseLine(line);
        // A throw here would escape the data handler and take the whole server down: drop the connection.
        if (!message) return this.broken(`QMP sent a line that is not a JSON object: ${line.slice(0, 200)}`);
        if ('QMP' in message) greet();
        else if (typeof message.event === 'string') this.emit({ event: message.event, data: objectOrUndefined(message.data) });
        else this.settle(message);
      }
      if (this.buffer.length > maxQmpLineChars) this.broken(`QMP sent over ${maxQmpLineChars} characters without a newline`);
    });
    const onClose = () => this.fail(new QmpError('QMP connection closed'));
    socket.on('close', onClose);
    socket.on('error', onClose);
  }

  /** Completes the capabilities handshake; call once before commands. */
  async handshake(): Promise<void> {
    await this.greeted;
    await this.execute('qmp_capabilities');
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closed);
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Resolves with the first event for which `match` returns true. */
  waitForEvent(match: (event: QmpEvent) => boolean): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(this.closed);
      const off = this.onEvent((event) => {
        if (!match(event)) return;
        off();
        resolve(event);
      });
      this.socket.once('close', () => {
        off();
        reject(new QmpError('QMP connection closed'));
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private emit(event: QmpEvent): void {
    for (const listener of this.eventListeners) listener(event);
  }

  private broken(reason: string): void {
    this.buffer = '';
    this.fail(new QmpError(reason));
    this.socket.destroy();
  }

  private settle(message: Record<string, unknown>): void {
    const waiter = this.waiters.get(String(message.id));
    if (!waiter) return;
    this.waiters.delete(String(message.id));
    const error = objectOrUndefined(message.error);
    if (error) waiter.reject(new QmpError(`${stringOr(error.class, 'Error')}: ${stringOr(error.desc, 'unknown QMP error')}`));
    else waiter.resolve(message.return);
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = error;
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
  }
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return objectOrUndefined(JSON.parse(line));
  } catch {
    return undefined;
  }
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return Object.fromEntries(Object.entries(value));
}

const stringOr = (value: unknown, fallback: string): string => (typeof value === 'string' ? value : fallback);

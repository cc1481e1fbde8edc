// At most N async tasks at once; the rest wait their turn in order, urgent ones before background ones.
export class Limiter {
  private running = 0;
  private readonly urgent: Array<() => void> = [];
  private readonly background: Array<() => void> = [];

  constructor(private readonly max: number) {}

  /** Runs `task` when a slot is free; a background task also lets every urgent one queued meanwhile go first. */
  async run<T>(task: () => Promise<T>, priority: 'urgent' | 'background' = 'urgent'): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => (priority === 'urgent' ? this.urgent : this.background).push(resolve));
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      (this.urgent.shift() ?? this.background.shift())?.();
    }
  }
}

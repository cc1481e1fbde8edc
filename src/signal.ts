// Something to wait for, with a deadline: wait() resolves at the next notify() or after `ms`, whichever is first.
export class Signal {
  private waiters: Array<() => void> = [];

  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

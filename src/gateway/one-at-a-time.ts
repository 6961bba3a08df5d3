/**
 * One piece of work at a time, the others waiting their turn in order of arrival, each for a bounded time. The
 * gateway runs large messages it must hold in memory through one of these per process, so a few of them at once
 * cannot take the process's memory (and with it everyone's mail).
 */

/** Why a waiter's work was not run: it waited longer than the bound, or its signal aborted the wait. */
export class NoTurn extends Error {
  constructor(readonly reason: 'timed-out' | 'cancelled', message: string) {
    super(message);
    this.name = 'NoTurn';
  }
}

export class OneAtATime {
  private running = false;
  /** What starts each waiter's work, first come first. */
  private readonly waiting: (() => void)[] = [];

  /** `maxWaitMs`: how long a piece of work may wait for its turn before it is given up (NoTurn 'timed-out'). */
  constructor(readonly maxWaitMs: number) {}

  /** Whether work runs now, so that new work would wait. */
  get busy(): boolean {
    return this.running;
  }

  /**
   * Runs `work` once nothing else of this gate runs and everything that came before has had its turn; the next
   * one's turn comes when `work` settles, however it settles. Rejects with NoTurn, `work` never called, when the
   * wait exceeds the bound or `signal` aborts while waiting (a waiter that gives up leaves the line).
   */
  async run<T>(work: () => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.turn(signal);
    try {
      return await work();
    } finally {
      this.passOn();
    }
  }

  private turn(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(new NoTurn('cancelled', 'cancelled before its turn'));
    if (!this.running) {
      this.running = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const leave = (error: NoTurn): void => {
        this.waiting.splice(this.waiting.indexOf(start), 1);
        done();
        reject(error);
      };
      const onAbort = (): void => leave(new NoTurn('cancelled', 'cancelled while waiting for its turn'));
      const timer = setTimeout(() => leave(new NoTurn('timed-out', `no turn within ${this.maxWaitMs} ms`)), this.maxWaitMs);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const start = (): void => {
        done();
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(start);
    });
  }

  /** The turn goes to the first waiter, or the gate is free. */
  private passOn(): void {
    const start = this.waiting.shift();
    if (start) start();
    else this.running = false;
  }
}

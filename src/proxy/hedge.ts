/**
 * Request hedging: when the first attempt has not answered after the route's `hedge.delay`, a second
 * one goes to another host and the first to answer wins; the other is cancelled. Only a request
 * without a body is hedged (a streamed body cannot feed two upstreams), and never an upgrade. This
 * holds the timer and the two racing attempts; the forwarder starts the second attempt when told to.
 */
export class HedgeRace<A extends { cancel(reason: 'lost' | 'gone'): void }> {
  #timer: NodeJS.Timeout | undefined;
  /** The attempt that was racing when the hedge went out, and the hedge. */
  #first: A | undefined;
  #second: A | undefined;

  /**
   * Fire `sendHedge` after `delayMs` from now, unless a hedge already went out. A new attempt (a retry)
   * re-arms: the delay counts from the attempt that is racing, and one timer is pending at most.
   */
  arm(delayMs: number, sendHedge: () => void): void {
    if (this.#second) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(sendHedge, delayMs);
  }

  /** The hedge went out: `first` and `second` now race (and no further hedge is armed). */
  started(first: A, second: A): void {
    this.disarm();
    this.#first = first;
    this.#second = second;
  }

  /** True once two attempts are racing. */
  get racing(): boolean {
    return this.#second !== undefined;
  }

  /** `winner` answered first: stop the timer and cancel the other racer (if there is a race). */
  settle(winner: A): void {
    this.disarm();
    if (this.#second) (winner === this.#second ? this.#first : this.#second)?.cancel('lost');
  }

  /** The request ended otherwise (the client left, a local answer): no hedge any more, cancel the earlier racer. */
  abandon(): void {
    this.disarm();
    this.#first?.cancel('gone');
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

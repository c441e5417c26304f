/** Result of one active check. */
export type CheckResult = 'pass' | 'pass-degraded' | 'fail' | 'fail-now';

/**
 * Active health state of one host (Envoy semantics): a host starts failed until its first check, and
 * a single pass marks it healthy then; afterwards `healthyThreshold` consecutive passes bring it back
 * and `unhealthyThreshold` consecutive failures take it out. A status outside the expected set fails it
 * at once (`fail-now`). A pass with `x-envoy-degraded` marks it degraded.
 */
export class HostHealthState {
  failed = true;
  degraded = false;
  #first = true;
  #passes = 0;
  #failures = 0;
  readonly #healthyThreshold: number;
  readonly #unhealthyThreshold: number;

  constructor(healthyThreshold: number, unhealthyThreshold: number) {
    this.#healthyThreshold = healthyThreshold;
    this.#unhealthyThreshold = unhealthyThreshold;
  }

  /** Apply a check result; returns true when `failed` or `degraded` changed. */
  apply(r: CheckResult): boolean {
    const before = `${this.failed}${this.degraded}`;
    if (r === 'pass' || r === 'pass-degraded') {
      this.#failures = 0;
      this.#passes++;
      this.degraded = r === 'pass-degraded';
      if (this.#first || this.#passes >= this.#healthyThreshold) this.failed = false;
    } else {
      this.#passes = 0;
      this.#failures++;
      if (r === 'fail-now' || this.#failures >= this.#unhealthyThreshold) this.failed = true;
    }
    this.#first = false;
    return before !== `${this.failed}${this.degraded}`;
  }
}

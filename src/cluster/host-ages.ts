import type { Clock } from '../common/clock.js';

/**
 * When each host of a cluster joined it or last came back healthy from an active health check
 * (Host.healthySince, read by slow start), kept by a worker across snapshots. The hosts of a cluster
 * seen for the first time (at startup, or a new cluster) are established (0): they start together,
 * so none has to ramp up against the others.
 */
export class HostAges {
  readonly #clusters = new Map<string, Map<string, number>>();
  readonly #clock: Clock;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** The ages of a cluster's hosts in a new snapshot; forgets hosts it no longer has. */
  track(cluster: string, addresses: readonly string[]): number[] {
    const known = this.#clusters.get(cluster);
    const now = this.#clock.now();
    const next = new Map(addresses.map((a) => [a, known ? (known.get(a) ?? now) : 0]));
    this.#clusters.set(cluster, next);
    return addresses.map((a) => next.get(a)!);
  }

  /** A host passed its active health check again: its slow start begins now. */
  becameHealthy(cluster: string, address: string): number {
    const now = this.#clock.now();
    this.#clusters.get(cluster)?.set(address, now);
    return now;
  }

  /** Forget clusters a new config no longer has. */
  retainOnly(clusters: ReadonlySet<string>): void {
    for (const name of this.#clusters.keys()) if (!clusters.has(name)) this.#clusters.delete(name);
  }
}

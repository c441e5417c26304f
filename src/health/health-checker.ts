import net from 'node:net';
import type { Dispatcher } from 'undici';
import type { ClusterConfig } from '../config/schema/index.js';
import { msOf, type DurationsMs } from '../config/duration.js';
import { splitAddress } from '../common/address.js';
import type { Rng } from '../common/clock.js';
import { HostHealthState, type CheckResult } from './host-health-state.js';

type HealthCheck = NonNullable<ClusterConfig['healthCheck']>;

/**
 * Active health checks of one cluster, run in the primary: HTTP (path, expected statuses,
 * x-envoy-degraded) or TCP connect, per endpoint on `interval` plus jitter (`noTrafficInterval` until
 * the cluster first carries traffic), with a timeout.
 * `onChange` receives the endpoint and its state after every check, and whether failed/degraded flipped.
 */
export class HealthChecker {
  readonly states = new Map<string, HostHealthState>();
  readonly #cfg: HealthCheck;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #pool: (address: string) => Dispatcher;
  readonly #rng: Rng;
  readonly #onChange: (address: string, s: HostHealthState, changed: boolean) => void;
  #stopped = false;
  /** Envoy's no_traffic_interval applies until the cluster first carries traffic. */
  #trafficSeen = false;
  /** Durations in ms, parsed when the config was validated. */
  readonly #ms: DurationsMs<HealthCheck>;

  constructor(
    cfg: HealthCheck,
    pool: (address: string) => Dispatcher,
    rng: Rng,
    onChange: (address: string, s: HostHealthState, changed: boolean) => void,
  ) {
    this.#cfg = cfg;
    this.#pool = pool;
    this.#rng = rng;
    this.#onChange = onChange;
    this.#ms = msOf(cfg);
  }

  /** Start checking `addresses`: one immediate round (awaited), then on the interval. */
  async start(addresses: string[]): Promise<void> {
    for (const a of addresses)
      this.states.set(a, new HostHealthState(this.#cfg.healthyThreshold, this.#cfg.unhealthyThreshold));
    await Promise.all(addresses.map((a) => this.#checkAndSchedule(a)));
  }

  /**
   * A new endpoint set with the same check settings (an endpoint delta): endpoints that stay keep their
   * state and schedule, removed ones stop, new ones get their first check (awaited) and then the interval.
   */
  async update(addresses: string[]): Promise<void> {
    const keep = new Set(addresses);
    for (const a of [...this.states.keys()]) {
      if (keep.has(a)) continue;
      clearTimeout(this.#timers.get(a));
      this.#timers.delete(a);
      this.states.delete(a);
    }
    const added = addresses.filter((a) => !this.states.has(a));
    for (const a of added)
      this.states.set(a, new HostHealthState(this.#cfg.healthyThreshold, this.#cfg.unhealthyThreshold));
    await Promise.all(added.map((a) => this.#checkAndSchedule(a)));
  }

  /**
   * The cluster carried traffic (reported by a worker): from now on checks run on `interval`; checks
   * waiting out the longer no-traffic interval are brought forward.
   */
  noteTraffic(): void {
    if (this.#trafficSeen) return;
    this.#trafficSeen = true;
    if (this.#ms.noTrafficInterval === undefined) return;
    for (const [address, timer] of this.#timers) {
      clearTimeout(timer);
      this.#schedule(address);
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
  }

  async #checkAndSchedule(address: string): Promise<void> {
    if (this.#stopped) return;
    const result = await this.check(address);
    const state = this.states.get(address);
    if (!state || this.#stopped) return;
    this.#onChange(address, state, state.apply(result));
    this.#schedule(address);
  }

  #schedule(address: string): void {
    const { interval, noTrafficInterval, jitter } = this.#ms;
    const base = !this.#trafficSeen && noTrafficInterval !== undefined ? noTrafficInterval : interval;
    const timer = setTimeout(
      () => void this.#checkAndSchedule(address),
      base + Math.floor(this.#rng.random() * (jitter + 1)),
    );
    timer.unref();
    this.#timers.set(address, timer);
  }

  /** One check of one endpoint. */
  async check(address: string): Promise<CheckResult> {
    const timeout = this.#ms.timeout;
    if (!this.#cfg.http) return tcpCheck(address, timeout);
    const http = this.#cfg.http;
    try {
      const res = await this.#pool(address).request({
        path: http.path,
        method: 'GET',
        headersTimeout: timeout,
        bodyTimeout: timeout,
        headers: { host: http.host ?? address, 'user-agent': 'meridian-health-check' },
      });
      await res.body.dump();
      if (!http.expectedStatuses.includes(res.statusCode)) return 'fail-now';
      return res.headers['x-envoy-degraded'] !== undefined ? 'pass-degraded' : 'pass';
    } catch {
      return 'fail';
    }
  }
}

function tcpCheck(address: string, timeout: number): Promise<CheckResult> {
  const { host, port } = splitAddress(address);
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (r: CheckResult) => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(timeout, () => done('fail'));
    s.once('connect', () => done('pass'));
    s.once('error', () => done('fail'));
  });
}

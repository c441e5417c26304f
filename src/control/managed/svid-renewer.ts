import { backoffDelay } from '../../common/backoff.js';
import type { Rng } from '../../common/clock.js';
import { gauge } from '../../observability/metrics.js';
import { logger } from '../../observability/logger.js';
import { readFile } from 'node:fs/promises';
import type { SnapshotTrust } from '../../hub/protocol.js';
import { type GatewaySvid, obtainSvid, signedBy, type SvidFiles, withBundle } from './gateway-svid.js';
import type { HubConnection } from './hub-connection.js';

const log = logger.child({ component: 'svid' });
const svidExpiry = gauge(
  'meridian_svid_expiry_timestamp_seconds',
  'When the SVID this gateway serves expires (unix time)',
);
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;

/**
 * When to renew an SVID: at half its lifetime, less up to a tenth of it at random, so a fleet issued
 * at one moment does not come back at one moment (SPIRE renews at half-life; Istio at a jittered
 * fraction too). A 1 h SVID is renewed 24-30 min after issue.
 */
export function renewalDelayMs(svid: Pick<GatewaySvid, 'issuedAt' | 'expiresAt'>, now: number, rng: Rng): number {
  const lifetime = svid.expiresAt.getTime() - svid.issuedAt.getTime();
  const at = svid.issuedAt.getTime() + lifetime * (0.5 - 0.1 * rng.random());
  return Math.max(0, at - now);
}

/** What a renewal hands on, and where the renewer asks. */
export interface SvidRenewerDeps {
  hub: HubConnection;
  cluster: string;
  files: SvidFiles;
  rng: Rng;
  /** Put the new SVID to use (listeners reload their files; east-west clusters get new pools). */
  renewed(svid: GatewaySvid): Promise<void>;
  /**
   * Put a new bundle to use: listeners reload it, and the SVID's new upstream copy is handed on for
   * the snapshot being applied (whose own config change makes the new pools).
   */
  rebundled(svid: GatewaySvid): Promise<void>;
}

/** How soon after learning that another root signs now an SVID is renewed: at once, spread over up to 2 s. */
const RESIGN_JITTER_MS = 2000;

/**
 * Keeps a gateway's SVID fresh: renews it at half-life with jitter (a new key pair, a CSR to the hub)
 * and hands the new one on. A hub that cannot be reached is asked again with backoff (1 s doubling to
 * 30 s); meanwhile the current SVID serves until it expires. Its expiry is a metric and in /ready.
 */
export class SvidRenewer {
  readonly #deps: SvidRenewerDeps;
  #svid: GatewaySvid;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #renewAt: Date | undefined;
  #stopped = false;
  /** Renewals and bundle changes one at a time: both rewrite the SVID's files. */
  #busy: Promise<unknown> = Promise.resolve();

  constructor(svid: GatewaySvid, deps: SvidRenewerDeps) {
    this.#svid = svid;
    this.#deps = deps;
    svidExpiry.set(svid.expiresAt.getTime() / 1000);
  }

  start(): void {
    this.#schedule(renewalDelayMs(this.#svid, Date.now(), this.#deps.rng));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#deps.hub.close();
  }

  /** For /ready: who this gateway is, until when, the next renewal and the last failure. */
  status(): Record<string, unknown> {
    return {
      svid: {
        spiffeId: this.#svid.spiffeId,
        serial: this.#svid.serial,
        expiresAt: this.#svid.expiresAt.toISOString(),
        renewAt: this.#renewAt?.toISOString(),
        ...(this.#lastError ? { lastError: this.#lastError, failures: this.#failures } : {}),
      },
    };
  }

  /**
   * The trust a snapshot carries: a changed bundle is written and put to use before the snapshot is
   * acknowledged (so the hub knows this gateway trusts a next root before any leaf chains to it), and
   * an SVID that the signing root did not sign is renewed at once (a rotation's `activate`).
   */
  applyTrust(trust: SnapshotTrust): Promise<void> {
    return this.#exclusive(async () => {
      const bundle = await readFile(this.#deps.files.bundle, 'utf8').catch(() => '');
      if (bundle !== trust.bundle) {
        const svid = await withBundle(this.#svid, trust.bundle);
        await this.#deps.rebundled(svid);
        this.#svid = svid;
        log.info({ serial: svid.serial }, 'trust bundle changed');
      }
      if (!(await signedBy(this.#svid, trust.signer)) && !this.#stopped) {
        clearTimeout(this.#timer);
        this.#schedule(this.#deps.rng.random() * RESIGN_JITTER_MS);
      }
    });
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#renewAt = new Date(Date.now() + delayMs);
    this.#timer = setTimeout(() => void this.#exclusive(() => this.#renew()), delayMs);
    this.#timer.unref();
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(task, task);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  async #renew(): Promise<void> {
    const { hub, cluster, files, rng } = this.#deps;
    let svid: GatewaySvid;
    try {
      svid = await obtainSvid(hub, cluster, files);
    } catch (e) {
      this.#failures++;
      this.#lastError = (e as Error).message;
      const retryMs = backoffDelay(this.#failures, RETRY_BASE_MS, RETRY_MAX_MS, rng);
      log.warn(
        { err: this.#lastError, expiresAt: this.#svid.expiresAt, retryMs },
        'SVID renewal failed; the current one serves until it expires',
      );
      return this.#schedule(retryMs);
    }
    this.#failures = 0;
    this.#lastError = undefined;
    try {
      await this.#deps.renewed(svid);
      log.info({ spiffeId: svid.spiffeId, serial: svid.serial, expiresAt: svid.expiresAt }, 'renewed the SVID');
    } catch (e) {
      log.error({ err: (e as Error).message, serial: svid.serial }, 'a renewed SVID could not be put to use');
    }
    // What /ready and the metric show is the SVID in use: set once it was handed on.
    this.#svid = svid;
    svidExpiry.set(svid.expiresAt.getTime() / 1000);
    this.#schedule(renewalDelayMs(svid, Date.now(), rng));
  }
}

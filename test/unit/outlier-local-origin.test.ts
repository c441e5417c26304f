import { describe, it, expect } from 'vitest';
import { OutlierDetector } from '../../src/outlier/detector.js';
import { Outcome } from '../../src/outlier/outcome.js';
import { validateConfig } from '../../src/config/validate.js';
import { seededRng } from '../../src/common/clock.js';
import { registry } from '../../src/observability/metrics.js';

function outlierConfig(o: Record<string, unknown> = {}) {
  const r = validateConfig({ clusters: [{ name: 'c', outlierDetection: o }] }, {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config.clusters[0].outlierDetection!;
}

let seq = 0;
/** A detector over n hosts with a fake clock; each setup has a cluster name of its own for the metrics. */
function setup(n: number, o: Record<string, unknown> = {}) {
  const cluster = `lo-${++seq}`;
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  const d = new OutlierDetector(
    cluster,
    outlierConfig({ maxEjectionPercent: 100, ...o }),
    clock,
    seededRng(1),
    () => {},
  );
  d.setHosts(Array.from({ length: n }, (_, i) => `h${i}`));
  return { d, clock, cluster };
}

async function metric(name: string, cluster: string, reason: string): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const { values } = await m.get();
  return values.find((v) => v.labels.cluster === cluster && v.labels.reason === reason)?.value ?? 0;
}
const detected = (cluster: string, reason: string) => metric('meridian_outlier_detected_total', cluster, reason);
const enforced = (cluster: string, reason: string) =>
  metric('meridian_outlier_ejections_enforced_total', cluster, reason);

const local = (k: number) => Array(k).fill(Outcome.LOCAL_FAILURE);
const fives = (k: number) => Array(k).fill(Outcome.HTTP_5XX);
const SPLIT = { splitExternalLocalOriginErrors: true };
const SEC = 1000;

describe('outlier detection: consecutive local-origin failures (split mode, fake clock)', () => {
  it('ejects after 5 consecutive local-origin failures (the default), not after 4', async () => {
    const { d, cluster } = setup(10, SPLIT);
    d.record('h0', local(4));
    expect(d.ejected().size).toBe(0);
    d.record('h0', local(1));
    expect([...d.ejected()]).toEqual(['h0']);
    expect(await enforced(cluster, 'consecutive_local_origin_failure')).toBe(1);
    expect(await enforced(cluster, 'consecutive_5xx')).toBe(0);
    expect(d.status('h0')).toMatchObject({ ejected: true, ejections: 1, ejectedForMs: 30 * SEC });
  });

  it('honours a configured threshold (3), and a success in between resets the count', () => {
    const { d } = setup(10, { ...SPLIT, consecutiveLocalOriginFailure: 3 });
    d.record('h0', [...local(2), Outcome.SUCCESS, ...local(2)]);
    expect(d.ejected().size).toBe(0);
    d.record('h0', local(1));
    expect([...d.ejected()]).toEqual(['h0']);
  });

  it('the ejection lasts baseEjectionTime and ends on the first interval tick after it', () => {
    const { d, clock } = setup(10, { ...SPLIT, consecutiveLocalOriginFailure: 2 });
    d.record('h1', local(2));
    clock.t = 29 * SEC;
    d.tick();
    expect(d.ejected().has('h1')).toBe(true);
    clock.t = 30 * SEC;
    d.tick();
    expect(d.ejected().size).toBe(0);
    // Counters were reset on return: one more failure is not enough.
    d.record('h1', local(1));
    expect(d.ejected().size).toBe(0);
  });

  it('local-origin failures neither count towards nor reset consecutive5xx in split mode', () => {
    const { d } = setup(10, { ...SPLIT, consecutiveLocalOriginFailure: 0 });
    d.record('h0', local(20));
    expect(d.ejected().size).toBe(0);
    d.record('h1', [...fives(4), Outcome.LOCAL_FAILURE, ...fives(1)]);
    expect([...d.ejected()]).toEqual(['h1']);
  });

  it('5xx responses do not count as local-origin failures in split mode', () => {
    const { d } = setup(10, { ...SPLIT, consecutive5xx: 0, consecutiveLocalOriginFailure: 2 });
    d.record('h0', fives(10));
    expect(d.ejected().size).toBe(0);
  });

  it('enforcingConsecutiveLocalOriginFailure 0: detected but not ejected', async () => {
    const { d, cluster } = setup(10, { ...SPLIT, enforcingConsecutiveLocalOriginFailure: 0 });
    d.record('h0', local(5));
    expect(d.ejected().size).toBe(0);
    expect(await detected(cluster, 'consecutive_local_origin_failure')).toBeGreaterThanOrEqual(1);
    expect(await enforced(cluster, 'consecutive_local_origin_failure')).toBe(0);
  });

  it('maxEjectionPercent still applies: 9 hosts at the default 10 % eject nothing', () => {
    const { d } = setup(9, { ...SPLIT, maxEjectionPercent: 10 });
    d.record('h0', local(5));
    expect(d.ejected().size).toBe(0);
  });

  // Envoy (DetectorImpl::onConsecutiveErrorWorker) resets the consecutive counter whenever the
  // threshold is reached, enforced or not: 10 consecutive failures are detected twice, not 6 times.
  it('a detection that is not enforced resets the counter, as in Envoy (10 failures -> 2 detections)', async () => {
    const { d, cluster } = setup(10, { ...SPLIT, enforcingConsecutiveLocalOriginFailure: 0 });
    d.record('h0', local(10));
    expect(await detected(cluster, 'consecutive_local_origin_failure')).toBe(2);
  });

  // Envoy reports LocalOriginConnectSuccess when a connection is ready (UpstreamRequest::onPoolReady):
  // in split mode a 5xx answer proves the connection worked and breaks a run of local-origin failures.
  it('in split mode a 5xx response (the connection worked) resets the local-origin count', () => {
    const { d } = setup(10, { ...SPLIT, consecutive5xx: 0 });
    d.record('h0', [...local(4), Outcome.HTTP_5XX, ...local(1)]);
    expect(d.ejected().size).toBe(0);
  });
});

describe('outlier detection: local-origin failures without split mode', () => {
  it('count as 5xx (and gateway failures): 5 connect failures eject by consecutive_5xx', async () => {
    const { d, cluster } = setup(10);
    d.record('h0', local(4));
    expect(d.ejected().size).toBe(0);
    d.record('h0', local(1));
    expect([...d.ejected()]).toEqual(['h0']);
    expect(await enforced(cluster, 'consecutive_5xx')).toBe(1);
    expect(await detected(cluster, 'consecutive_gateway_failure')).toBeGreaterThanOrEqual(1);
    expect(await enforced(cluster, 'consecutive_local_origin_failure')).toBe(0);
  });

  it('consecutiveLocalOriginFailure is ignored: threshold 2 does not eject after 2 local failures', () => {
    const { d } = setup(10, { consecutiveLocalOriginFailure: 2 });
    d.record('h0', local(4));
    expect(d.ejected().size).toBe(0);
  });

  it('local failures and 5xx mix in one consecutive-5xx run', () => {
    const { d } = setup(10);
    d.record('h0', [...fives(2), ...local(2), ...fives(1)]);
    expect([...d.ejected()]).toEqual(['h0']);
  });
});

describe('outlier detection: success rate by origin (Envoy computes local-origin success rate apart in split mode)', () => {
  // 5 hosts x 100 requests; h0: 50 successes and 50 connect failures spread out (no consecutive run).
  const traffic = (d: OutlierDetector) => {
    d.record(
      'h0',
      Array.from({ length: 100 }, (_, i) => (i % 2 ? Outcome.LOCAL_FAILURE : Outcome.SUCCESS)),
    );
    for (let i = 1; i < 5; i++) d.record(`h${i}`, Array(100).fill(Outcome.SUCCESS));
  };

  it('split mode: local-origin failures eject by success_rate_local_origin, not by the external success rate', async () => {
    const { d, cluster } = setup(5, { ...SPLIT, successRate: { minimumHosts: 5, requestVolume: 50 } });
    traffic(d);
    d.tick();
    expect([...d.ejected()]).toEqual(['h0']);
    expect(await enforced(cluster, 'success_rate_local_origin')).toBe(1);
    // External success rate: h0 answered 50 of 50 connected requests fine, not an outlier there.
    expect(await detected(cluster, 'success_rate')).toBe(0);
  });

  it('split mode: the external success rate counts only the upstream answers', async () => {
    const { d, cluster } = setup(5, { ...SPLIT, successRate: { minimumHosts: 5, requestVolume: 50 } });
    d.record(
      'h0',
      Array.from({ length: 100 }, (_, i) => (i % 2 ? Outcome.HTTP_5XX : Outcome.SUCCESS)),
    );
    for (let i = 1; i < 5; i++) d.record(`h${i}`, Array(100).fill(Outcome.SUCCESS));
    d.tick();
    expect(await enforced(cluster, 'success_rate')).toBe(1);
    expect(await detected(cluster, 'success_rate_local_origin')).toBe(0);
  });

  it('without split mode local-origin failures count in the one success rate', async () => {
    const { d, cluster } = setup(5, { successRate: { minimumHosts: 5, requestVolume: 50 } });
    traffic(d);
    d.tick();
    expect([...d.ejected()]).toEqual(['h0']);
    expect(await enforced(cluster, 'success_rate')).toBe(1);
    expect(await detected(cluster, 'success_rate_local_origin')).toBe(0);
  });
});

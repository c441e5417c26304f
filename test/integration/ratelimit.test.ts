import { describe, it, expect, afterEach } from 'vitest';
import autocannon from 'autocannon';
import { createHash } from 'node:crypto';
import { request, Agent } from 'undici';
import { spawnGateway, startInProcess, baseConfig, waitFor } from '../helpers/gateway.js';
import { startUpstream, okHandler } from '../helpers/upstream.js';
import { startRedis } from '../helpers/redis-server.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

async function upstream() {
  const up = await startUpstream(okHandler('up'));
  cleanup.push(() => up.close());
  return up;
}

function limited(upAddress: string, policy: Record<string, unknown>, extra: Record<string, unknown> = {}, workers = 2) {
  return baseConfig({
    gateway: { name: 'rl', workers, accessLog: { enabled: false } },
    rateLimits: [{ name: 'per-client', key: [{ value: 'all' }], limit: { requests: 100, per: '1s' }, ...policy }],
    routes: [{ name: 'api', match: { path: { prefix: '/' } }, cluster: 'up', rateLimits: ['per-client'] }],
    clusters: [{ name: 'up', endpoints: [{ address: upAddress }] }],
    ...extra,
  });
}

const run = (url: string, seconds = 5) => autocannon({ url, connections: 10, duration: seconds });
/** Bucket starts full (burst 100) and refills 100/s: over 5 s the limit admits 600. */
const EXPECTED = 600;

/**
 * What the limit admits over the time the load actually ran: the burst plus 100/s from the first
 * request sent to the last. Two autocannon runs started together on a busy machine can start a
 * second apart, and the bucket then refills for that second too (600 is the 5 s of one run).
 */
function admissible(...runs: autocannon.Result[]): number {
  const start = Math.min(...runs.map((r) => new Date(r.start).getTime()));
  const finish = Math.max(...runs.map((r) => new Date(r.finish).getTime()));
  return 100 + (100 * (finish - start)) / 1000;
}

/** Two gateways (each with `workers`) on one real redis-server, under autocannon at once. */
async function twoGatewaysOnOneRedis(policy: Record<string, unknown>, workers: number) {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const up = await upstream();
  const cfg = limited(up.address, policy, { redis: { url: redis.url, timeout: '1s' } }, workers);
  const a = await spawnGateway(cfg);
  cleanup.push(() => a.stop());
  const b = await spawnGateway(cfg);
  cleanup.push(() => b.stop());
  return Promise.all([run(`${a.url}/x`), run(`${b.url}/x`)]);
}

describe('rate limiting', () => {
  it('a 2-worker gateway with the local store admits the limit within 5 %', async () => {
    const up = await upstream();
    const gw = await spawnGateway(limited(up.address, { store: 'local' }));
    cleanup.push(() => gw.stop());
    const r = await run(`${gw.url}/x`);
    const admitted = r['2xx'];
    expect(Math.abs(admitted - EXPECTED) / EXPECTED).toBeLessThanOrEqual(0.05);
    expect(r.non2xx).toBeGreaterThan(1000);
  });

  it('two gateways sharing one Redis enforce one global limit within 5 %', async () => {
    const [ra, rb] = await twoGatewaysOnOneRedis({ store: 'redis' }, 1);
    const admitted = ra['2xx'] + rb['2xx'];
    const expected = admissible(ra, rb);
    expect(expected).toBeGreaterThanOrEqual(EXPECTED * 0.98);
    expect(Math.abs(admitted - expected) / expected).toBeLessThanOrEqual(0.05);
    expect(ra['2xx']).toBeGreaterThan(100);
    expect(rb['2xx']).toBeGreaterThan(100);
  });

  it('with batch: 20, two 2-worker gateways on one Redis never exceed the limit and lose a bounded share to unspent leases', async () => {
    const [ra, rb] = await twoGatewaysOnOneRedis({ store: 'redis', batch: 20 }, 2);
    const admitted = ra['2xx'] + rb['2xx'];
    // Measured here: 499-551 of 600 (batch 1: 594; batch 20 with one worker per gateway: 561). The
    // trade-off documented in docs/rate-limiting.md: leases never over-admit, unspent ones are lost.
    const expected = admissible(ra, rb);
    console.log(`batch 20, 2 gateways x 2 workers: admitted ${admitted} of ${expected.toFixed(0)}`);
    expect(admitted).toBeLessThanOrEqual(expected * 1.05);
    expect(admitted).toBeGreaterThanOrEqual(EXPECTED * 0.7);
  });

  it('answers 429 with Retry-After and the draft RateLimit headers', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      limited(up.address, { limit: { requests: 2, per: '10s' }, headersOnSuccess: true }, {}, 1),
    );
    cleanup.push(() => gw.stop());
    const first = await request(`${gw.url}/x`);
    await first.body.dump();
    expect(first.statusCode).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"per-client";q=2;w=10');
    expect(first.headers.ratelimit).toMatch(/^"per-client";r=\d+;t=10$/);
    await (await request(`${gw.url}/x`)).body.dump();
    const before = up.requests.length;
    const third = await request(`${gw.url}/x`);
    expect(third.statusCode).toBe(429);
    expect(third.headers['x-meridian-error']).toBe('rate_limited');
    expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(third.headers['retry-after'])).toBeLessThanOrEqual(5);
    expect(third.headers.ratelimit).toMatch(/^"per-client";r=0;t=\d+$/);
    await third.body.dump();
    expect(up.requests.length).toBe(before);
  });

  it('applies per-key overrides (a gold consumer gets 10x)', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      limited(
        up.address,
        {
          key: [{ header: 'x-tenant' }],
          limit: { requests: 2, per: '10s' },
          overrides: [{ match: 'gold-*', limit: { requests: 20, per: '10s' } }],
        },
        {},
        1,
      ),
    );
    cleanup.push(() => gw.stop());
    const count = async (tenant: string) => {
      let ok = 0;
      for (let i = 0; i < 30; i++) {
        const r = await request(`${gw.url}/x`, { headers: { 'x-tenant': tenant } });
        await r.body.dump();
        if (r.statusCode === 200) ok++;
      }
      return ok;
    };
    expect(await count('basic-1')).toBe(2);
    expect(await count('gold-1')).toBe(20);
    // Without the key header the policy does not apply (onMissingKey: skip).
    expect((await request(`${gw.url}/x`)).statusCode).toBe(200);
  });

  it('counts and access-logs refusals (429, 401, 403) with their route and error code', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      baseConfig({
        gateway: { name: 'refusals', workers: 2, accessLog: { enabled: true } },
        auth: {
          apiKeys: [
            { name: 'keys', keys: [{ consumer: 'acme', sha256: createHash('sha256').update('k1').digest('hex') }] },
          ],
        },
        rbac: [{ name: 'nobody', rules: [{ action: 'deny' }] }],
        rateLimits: [{ name: 'one', key: [{ value: 'all' }], limit: { requests: 1, per: '60s' } }],
        routes: [
          { name: 'rl', match: { path: { prefix: '/rl' } }, cluster: 'up', rateLimits: ['one'] },
          { name: 'keyed', match: { path: { prefix: '/keyed' } }, cluster: 'up', auth: ['keys'] },
          { name: 'closed', match: { path: { prefix: '/closed' } }, cluster: 'up', rbac: 'nobody' },
        ],
        clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
      }),
    );
    cleanup.push(() => gw.stop());
    const get = async (path: string, id: string) => {
      const r = await request(`${gw.url}${path}`, { headers: { 'x-request-id': id } });
      await r.body.dump();
      return r.statusCode;
    };
    expect(await get('/rl', 'rl-1')).toBe(200);
    expect(await get('/rl', 'rl-2')).toBe(429);
    expect(await get('/keyed', 'keyed-1')).toBe(401);
    expect(await get('/closed', 'closed-1')).toBe(403);
    expect(up.requests.length).toBe(1);

    const metrics = await waitFor(async () => {
      const text = await (await request(`${gw.admin}/metrics`)).body.text();
      return text.includes('route="closed",status_class="4xx"} 1') ? text : undefined;
    });
    for (const line of [
      'meridian_downstream_rq_total{route="rl",status_class="2xx"} 1',
      'meridian_downstream_rq_total{route="rl",status_class="4xx"} 1',
      'meridian_downstream_rq_total{route="keyed",status_class="4xx"} 1',
      'meridian_downstream_errors_total{code="rate_limited"} 1',
      'meridian_downstream_errors_total{code="unauthenticated"} 1',
      'meridian_downstream_errors_total{code="forbidden"} 1',
    ])
      expect(metrics).toContain(line);

    const access = (id: string) =>
      waitFor(() =>
        gw.output
          .map((l) => {
            try {
              return JSON.parse(l);
            } catch {
              return {};
            }
          })
          .find((l) => l.type === 'access' && l.requestId === id),
      );
    expect(await access('rl-2')).toMatchObject({ route: 'rl', status: 429, error: 'rate_limited', path: '/rl' });
    expect(await access('keyed-1')).toMatchObject({ route: 'keyed', status: 401, error: 'unauthenticated' });
    expect(await access('closed-1')).toMatchObject({ route: 'closed', status: 403, error: 'forbidden' });
  });

  for (const mode of ['open', 'closed'] as const) {
    it(`follows failureMode ${mode} when Redis dies, answers within the timeout, and recovers when it returns`, async () => {
      const redis = await startRedis();
      cleanup.push(() => redis.stop());
      const up = await upstream();
      const gw = await startInProcess(
        limited(
          up.address,
          { store: 'redis', failureMode: mode, limit: { requests: 5, per: '10s' } },
          { redis: { url: redis.url, timeout: '50ms' } },
          1,
        ),
      );
      cleanup.push(() => gw.stop());
      const agent = new Agent();
      const statuses = async (n: number) => {
        const out: number[] = [];
        for (let i = 0; i < n; i++) {
          const t0 = Date.now();
          const r = await request(`${gw.url}/x`, { dispatcher: agent });
          await r.body.dump();
          expect(Date.now() - t0).toBeLessThan(500);
          out.push(r.statusCode);
        }
        return out;
      };
      const healthy = await statuses(8);
      expect(healthy.filter((s) => s === 429).length).toBeGreaterThan(0);
      await redis.kill();
      await new Promise((r) => setTimeout(r, 150)); // outlive the 100 ms lease
      const during = await statuses(10);
      expect(during).toEqual(Array(10).fill(mode === 'open' ? 200 : 503));
      await waitFor(
        async () => ((await (await request(`${gw.admin}/ready`)).body.json()) as { redis?: string }).redis === 'down',
        3000,
      );
      await redis.restart();
      // Recovered without a gateway restart: Redis decides again. Closed mode admits again (a fresh
      // Redis has full buckets), and both modes refuse again once its 5 tokens are spent.
      if (mode === 'closed') await waitFor(async () => (await statuses(1))[0] === 200, 5000);
      expect(await waitFor(async () => (await statuses(10)).includes(429), 8000)).toBe(true);
      await agent.close();
    });
  }

  for (const mode of ['open', 'closed'] as const) {
    it(`under autocannon, Redis killed mid-run: failureMode ${mode} applies at once, no errors, no stalls`, async () => {
      const redis = await startRedis();
      cleanup.push(() => redis.stop());
      const up = await upstream();
      const gw = await startInProcess(
        limited(
          up.address,
          { store: 'redis', failureMode: mode, limit: { requests: 1000000, per: '1s' } },
          { redis: { url: redis.url, timeout: '50ms' } },
          1,
        ),
      );
      cleanup.push(() => gw.stop());
      const load = autocannon({ url: `${gw.url}/x`, connections: 10, duration: 3 });
      // Deliberate timing: Redis dies 1 s into the 3 s load run.
      const killed = new Promise((r) => setTimeout(r, 1000)).then(() => redis.kill());
      const [result] = await Promise.all([load, killed]);
      expect(result.errors).toBe(0);
      expect(result.timeouts).toBe(0);
      const codes = Object.keys(result.statusCodeStats ?? {})
        .map(Number)
        .sort();
      if (mode === 'open') expect(codes).toEqual([200]);
      else {
        expect(codes).toEqual([200, 503]);
        expect(result.non2xx).toBeGreaterThan(0);
      }
      expect(result['2xx']).toBeGreaterThan(100);
      // Every request was answered within the Redis timeout's reach, none hung on the dead connection.
      expect(result.latency.max).toBeLessThan(1000);
    });
  }
});

import { describe, it, expect } from 'vitest';
import type { Config } from '../../../src/config/schema/index.js';
import { RateLimitPolicySchema } from '../../../src/config/schema/ratelimit.js';
import { applySchema } from '../../../src/config/validate.js';
import { compilePolicy, createRateLimitFilter } from '../../../src/filters/ratelimit/filter.js';
import { createLocalStore, registerLocalRateLimitServer } from '../../../src/filters/ratelimit/local-store.js';
import type { LeasingStore } from '../../../src/filters/ratelimit/leasing-store.js';
import { createLocalRpc } from '../../../src/control/ipc/rpc.js';
import type { Filter, FilterResponse, PeerIdentity, RequestContext } from '../../../src/filters/filter.js';

type Policy = Config['rateLimits'][number];

/**
 * The real local store, in process: the primary's authoritative buckets (registerLocalRateLimitServer)
 * behind the in-process RPC pair that single-process mode uses, and the worker's LeasingStore on top.
 * Both read the same fake clock, so time only moves when a test moves it.
 */
function harness() {
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  const { channel, server } = createLocalRpc();
  registerLocalRateLimitServer(server, clock);
  const store: LeasingStore = createLocalStore(channel, clock);
  return {
    clock,
    /** Advance fake time by `ms` (also expires the worker's 100 ms leases). */
    advance(ms: number) {
      clock.t += ms;
    },
    filter: (...raw: Array<Record<string, unknown>>) =>
      createRateLimitFilter(raw.map((r) => compilePolicy(policy(r), store))),
  };
}

/** A policy with the schema's defaults filled in, exactly as the config loader builds it. */
function policy(raw: Record<string, unknown>): Policy {
  const r = applySchema<Policy>(RateLimitPolicySchema, structuredClone(raw));
  if (!r.ok) throw new Error(`bad policy: ${JSON.stringify(r.errors)}`);
  return r.value;
}

interface CtxInput {
  headers?: Record<string, string | string[]>;
  claims?: Record<string, unknown>;
  consumer?: string;
  spiffeId?: string;
  routeName?: string;
  clientIp?: string;
}

function ctx(o: CtxInput = {}): RequestContext {
  const peer: PeerIdentity | undefined = o.spiffeId
    ? { subject: 'CN=client', dnsNames: [], uris: [o.spiffeId], spiffeId: o.spiffeId, fingerprint: 'ab' }
    : undefined;
  return {
    method: 'GET',
    path: '/',
    query: '',
    authority: 'api.test',
    headers: Object.assign(Object.create(null), o.headers ?? {}),
    clientIp: o.clientIp ?? '192.0.2.10',
    peer,
    routeName: o.routeName ?? 'api',
    requestId: 'req',
    claims: o.claims,
    consumer: o.consumer,
    upstreamHeaders: [],
    upstreamStrip: [],
    responseHeaders: [],
  };
}

async function run(filter: Filter, c: RequestContext = ctx()): Promise<FilterResponse | undefined> {
  return (await filter.onRequest(c)) ?? undefined;
}

/** Statuses of `n` requests built by `make` (200 = admitted, the filter continued). */
async function statuses(filter: Filter, n: number, make: () => RequestContext = () => ctx()): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await run(filter, make()))?.status ?? 200);
  return out;
}

const perMinute = (requests: number) => ({ requests, per: '1m' });

describe('missing keys', () => {
  it('onMissingKey: skip leaves requests without the key out of the policy', async () => {
    const h = harness();
    const f = h.filter({ name: 'skip', key: [{ header: 'x-tenant' }], limit: perMinute(1), headersOnSuccess: true });
    const c = ctx();
    expect(await statuses(f, 5, () => c)).toEqual([200, 200, 200, 200, 200]);
    // Skipped entirely: no token taken, so no RateLimit headers either.
    expect(c.responseHeaders).toEqual([]);
    // With the key present the limit applies.
    expect(await statuses(f, 2, () => ctx({ headers: { 'x-tenant': 'acme' } }))).toEqual([200, 429]);
  });

  it('onMissingKey: default puts every request without the key in one shared __default__ bucket', async () => {
    const h = harness();
    const f = h.filter({
      name: 'dflt',
      key: [{ header: 'x-tenant' }, { source: 'route' }],
      limit: perMinute(2),
      onMissingKey: 'default',
    });
    // Two different routes, no x-tenant: the whole key is __default__, so they share one bucket.
    expect(await statuses(f, 1, () => ctx({ routeName: 'a' }))).toEqual([200]);
    expect(await statuses(f, 1, () => ctx({ routeName: 'b' }))).toEqual([200]);
    expect(await statuses(f, 1, () => ctx({ routeName: 'c' }))).toEqual([429]);
    // Keyed requests have their own buckets, untouched by the default one.
    expect(await statuses(f, 3, () => ctx({ headers: { 'x-tenant': 'acme' }, routeName: 'a' }))).toEqual([
      200, 200, 429,
    ]);
    expect(await statuses(f, 1, () => ctx({ headers: { 'x-tenant': 'acme' }, routeName: 'b' }))).toEqual([200]);
  });

  it('a literal "__default__" header value lands in the same bucket as keyless requests', async () => {
    const h = harness();
    const f = h.filter({
      name: 'collide',
      key: [{ header: 'x-tenant' }],
      limit: perMinute(1),
      onMissingKey: 'default',
    });
    expect(await statuses(f, 1, () => ctx())).toEqual([200]);
    expect(await statuses(f, 1, () => ctx({ headers: { 'x-tenant': '__default__' } }))).toEqual([429]);
  });
});

describe('key sources', () => {
  it('header: matched case-insensitively, one bucket per value, the first of repeated values', async () => {
    const h = harness();
    const f = h.filter({ name: 'hdr', key: [{ header: 'X-Tenant' }], limit: perMinute(1) });
    expect(await statuses(f, 2, () => ctx({ headers: { 'x-tenant': 'acme' } }))).toEqual([200, 429]);
    expect(await statuses(f, 1, () => ctx({ headers: { 'x-tenant': 'globex' } }))).toEqual([200]);
    expect(await statuses(f, 1, () => ctx({ headers: { 'x-tenant': ['acme', 'other'] } }))).toEqual([429]);
  });

  it('claim: an exact claim name wins over a dotted path, as in RBAC; an object-valued claim is no key', async () => {
    const h = harness();
    const f = h.filter({
      name: 'uri',
      key: [{ claim: 'https://example.com/tenant' }],
      limit: perMinute(1),
      onMissingKey: 'skip',
    });
    const claims = (tenant: unknown) => ({ sub: 'u', 'https://example.com/tenant': tenant });
    expect(await statuses(f, 2, () => ctx({ claims: claims('acme') }))).toEqual([200, 429]);
    expect(await statuses(f, 1, () => ctx({ claims: claims('globex') }))).toEqual([200]);
    // Objects would all read "[object Object]" and share one bucket: they are missing keys (skipped).
    expect(await statuses(f, 3, () => ctx({ claims: claims({ id: 1 }) }))).toEqual([200, 200, 200]);
  });

  it('claim: a nested dotted path; numbers become text; a missing step means no key', async () => {
    const h = harness();
    const f = h.filter({ name: 'clm', key: [{ claim: 'org.tenant.id' }], limit: perMinute(1), onMissingKey: 'skip' });
    const claims = (id: unknown) => ({ sub: 'u', org: { tenant: { id } } });
    expect(await statuses(f, 2, () => ctx({ claims: claims('acme') }))).toEqual([200, 429]);
    expect(await statuses(f, 1, () => ctx({ claims: claims('globex') }))).toEqual([200]);
    // Number 42 and string "42" are the same key.
    expect(await statuses(f, 1, () => ctx({ claims: claims(42) }))).toEqual([200]);
    expect(await statuses(f, 1, () => ctx({ claims: claims('42') }))).toEqual([429]);
    // No claims, or a path that stops early: skipped (never limited).
    expect(await statuses(f, 3, () => ctx())).toEqual([200, 200, 200]);
    expect(await statuses(f, 3, () => ctx({ claims: { org: { name: 'x' } } }))).toEqual([200, 200, 200]);
    expect(await statuses(f, 3, () => ctx({ claims: { org: 'flat' } }))).toEqual([200, 200, 200]);
  });

  it('consumer: one bucket per API-key consumer', async () => {
    const h = harness();
    const f = h.filter({ name: 'cons', key: [{ source: 'consumer' }], limit: perMinute(2) });
    expect(await statuses(f, 3, () => ctx({ consumer: 'alice' }))).toEqual([200, 200, 429]);
    expect(await statuses(f, 2, () => ctx({ consumer: 'bob' }))).toEqual([200, 200]);
    expect(await statuses(f, 3, () => ctx())).toEqual([200, 200, 200]);
  });

  it('spiffeId: one bucket per verified SPIFFE ID', async () => {
    const h = harness();
    const f = h.filter({ name: 'svid', key: [{ source: 'spiffeId' }], limit: perMinute(1) });
    const ops = 'spiffe://prod.example/ns/ops/sa/x';
    const dev = 'spiffe://prod.example/ns/dev/sa/y';
    expect(await statuses(f, 2, () => ctx({ spiffeId: ops }))).toEqual([200, 429]);
    expect(await statuses(f, 2, () => ctx({ spiffeId: dev }))).toEqual([200, 429]);
    // No client certificate: no key, skipped.
    expect(await statuses(f, 2, () => ctx())).toEqual([200, 200]);
  });

  it('value: a constant key, one bucket for every request whatever it carries', async () => {
    const h = harness();
    const f = h.filter({ name: 'global', key: [{ value: 'all' }], limit: perMinute(3) });
    const mixed = [
      ctx({ consumer: 'a' }),
      ctx({ headers: { 'x-tenant': 'b' } }),
      ctx({ clientIp: '198.51.100.7' }),
      ctx({ routeName: 'other' }),
    ];
    const got: number[] = [];
    for (const c of mixed) got.push((await run(f, c))?.status ?? 200);
    expect(got).toEqual([200, 200, 200, 429]);
  });

  it('several parts are joined with "|"; any missing part means no key', async () => {
    const h = harness();
    const f = h.filter({
      name: 'multi',
      key: [{ header: 'x-tenant' }, { source: 'consumer' }, { source: 'clientIp' }],
      limit: perMinute(1),
    });
    const c = (tenant?: string, consumer?: string) => ctx({ headers: tenant ? { 'x-tenant': tenant } : {}, consumer });
    expect(await statuses(f, 2, () => c('acme', 'alice'))).toEqual([200, 429]);
    expect(await statuses(f, 1, () => c('acme', 'bob'))).toEqual([200]);
    expect(await statuses(f, 3, () => c('acme'))).toEqual([200, 200, 200]);
  });
});

describe('several policies on one route', () => {
  it('the strictest wins: 429 from the exhausted policy, with its name in the headers', async () => {
    const h = harness();
    const f = h.filter(
      { name: 'per-ip', key: [{ source: 'clientIp' }], limit: perMinute(10) },
      { name: 'per-tenant', key: [{ header: 'x-tenant' }], limit: perMinute(2) },
    );
    const c = () => ctx({ headers: { 'x-tenant': 'acme' } });
    expect(await statuses(f, 2, c)).toEqual([200, 200]);
    const r = await run(f, c());
    expect(r).toMatchObject({ status: 429, code: 'rate_limited', body: 'rate limited\n' });
    expect(r!.headers).toEqual({
      'ratelimit-policy': '"per-tenant";q=2;w=60',
      ratelimit: '"per-tenant";r=0;t=30',
      'retry-after': '30',
    });
    // Another tenant from the same IP still passes: per-ip has tokens left.
    expect(await statuses(f, 1, () => ctx({ headers: { 'x-tenant': 'globex' } }))).toEqual([200]);
  });

  it('every policy takes its token even when another one refuses', async () => {
    const h = harness();
    const f = h.filter(
      { name: 'slow', key: [{ value: 'x' }], limit: { requests: 5, per: '10m' } }, // one token per 120 s
      { name: 'fast', key: [{ value: 'x' }], limit: perMinute(2) }, // one token per 30 s
    );
    // 2 admitted, 3 refused by "fast", but "slow" lost 5 tokens.
    expect(await statuses(f, 5)).toEqual([200, 200, 429, 429, 429]);
    h.advance(30_000);
    // "fast" has a token again; "slow" has a quarter of one, so "slow" now refuses.
    const r = await run(f);
    expect(r?.status).toBe(429);
    expect(r!.headers!['ratelimit-policy']).toBe('"slow";q=5;w=600');
    expect(r!.headers!['retry-after']).toBe('90');
  });

  it('when two policies refuse, the one with the longer wait names the refusal (Retry-After is not too short)', async () => {
    const h = harness();
    const f = h.filter(
      { name: 'short', key: [{ value: 'x' }], limit: { requests: 1, per: '1s' } },
      { name: 'long', key: [{ value: 'x' }], limit: { requests: 1, per: '1m' } },
    );
    expect(await statuses(f, 1)).toEqual([200]);
    const r = await run(f);
    expect(r?.status).toBe(429);
    expect(r!.headers!['ratelimit-policy']).toBe('"long";q=1;w=60');
    expect(r!.headers!['retry-after']).toBe('60');
  });

  it('a policy without a key for the request does not take part', async () => {
    const h = harness();
    const f = h.filter(
      { name: 'by-consumer', key: [{ source: 'consumer' }], limit: perMinute(1) },
      { name: 'by-ip', key: [{ source: 'clientIp' }], limit: perMinute(3), headersOnSuccess: true },
    );
    const c = ctx();
    expect(await run(f, c)).toBeUndefined();
    expect(c.responseHeaders).toEqual(['ratelimit-policy', '"by-ip";q=3;w=60', 'ratelimit', '"by-ip";r=2;t=60']);
  });
});

describe('overrides', () => {
  it('the first glob matching the joined key replaces the limit; others keep the base limit', async () => {
    const h = harness();
    const f = h.filter({
      name: 'tiers',
      key: [{ header: 'x-tenant' }, { source: 'route' }],
      limit: perMinute(1),
      onMissingKey: 'default',
      overrides: [
        { match: 'gold-*', limit: perMinute(4) },
        { match: 'gold-vip|*', limit: perMinute(100) }, // shadowed by the first match
        { match: 'silver|api', limit: perMinute(2) },
      ],
      headersOnSuccess: true,
    });
    const c =
      (tenant?: string, routeName = 'api') =>
      () =>
        ctx({ headers: tenant ? { 'x-tenant': tenant } : {}, routeName });
    expect(await statuses(f, 5, c('gold-7'))).toEqual([200, 200, 200, 200, 429]);
    expect(await statuses(f, 5, c('gold-vip'))).toEqual([200, 200, 200, 200, 429]);
    expect(await statuses(f, 3, c('silver'))).toEqual([200, 200, 429]);
    // Exact pattern: another route of the same tenant gets the base limit.
    expect(await statuses(f, 2, c('silver', 'web'))).toEqual([200, 429]);
    expect(await statuses(f, 2, c('bronze'))).toEqual([200, 429]);
    // The __default__ bucket matches none of these patterns.
    expect(await statuses(f, 2, c())).toEqual([200, 429]);
    // The headers report the override's limit.
    const gold = ctx({ headers: { 'x-tenant': 'gold-8' }, routeName: 'api' });
    await run(f, gold);
    expect(gold.responseHeaders).toEqual(['ratelimit-policy', '"tiers";q=4;w=60', 'ratelimit', '"tiers";r=3;t=60']);
  });

  it('a "*" override also covers the __default__ bucket', async () => {
    const h = harness();
    const f = h.filter({
      name: 'star',
      key: [{ header: 'x-tenant' }],
      limit: perMinute(1),
      onMissingKey: 'default',
      overrides: [{ match: '*', limit: perMinute(3) }],
    });
    expect(await statuses(f, 4)).toEqual([200, 200, 200, 429]);
  });
});

describe('response headers', () => {
  it('headersOnSuccess adds ratelimit-policy and ratelimit to admitted responses, counting down', async () => {
    const h = harness();
    const f = h.filter({
      name: 'visible',
      key: [{ source: 'clientIp' }],
      limit: { requests: 3, per: '10s' },
      headersOnSuccess: true,
    });
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      const c = ctx();
      expect(await run(f, c)).toBeUndefined();
      expect(c.responseHeaders[0]).toBe('ratelimit-policy');
      expect(c.responseHeaders[1]).toBe('"visible";q=3;w=10');
      expect(c.responseHeaders[2]).toBe('ratelimit');
      seen.push(c.responseHeaders[3]);
    }
    expect(seen).toEqual(['"visible";r=2;t=10', '"visible";r=1;t=10', '"visible";r=0;t=10']);
  });

  it('without headersOnSuccess admitted responses carry no headers', async () => {
    const h = harness();
    const f = h.filter({ name: 'quiet', key: [{ source: 'clientIp' }], limit: perMinute(3) });
    const c = ctx();
    expect(await run(f, c)).toBeUndefined();
    expect(c.responseHeaders).toEqual([]);
  });

  it('headers on success follow the deciding policy (fewest tokens left), not any policy that asked', async () => {
    const h = harness();
    const f = h.filter(
      { name: 'loud', key: [{ value: 'x' }], limit: perMinute(50), headersOnSuccess: true },
      { name: 'tight', key: [{ value: 'x' }], limit: perMinute(5) },
    );
    const c = ctx();
    expect(await run(f, c)).toBeUndefined();
    expect(c.responseHeaders).toEqual([]);
  });

  it('429 carries Retry-After equal to t, the time to the next token, never below 1 s', async () => {
    const h = harness();
    const f = h.filter({ name: 'slow', key: [{ value: 'x' }], limit: { requests: 1, per: '10s' } });
    expect(await run(f)).toBeUndefined();
    let r = await run(f);
    expect(r).toMatchObject({
      status: 429,
      headers: { 'retry-after': '10', ratelimit: '"slow";r=0;t=10', 'ratelimit-policy': '"slow";q=1;w=10' },
    });
    h.advance(4000);
    r = await run(f);
    expect(r!.headers!['retry-after']).toBe('6');
    h.advance(5500);
    r = await run(f);
    expect(r!.headers!['retry-after']).toBe('1'); // 500 ms rounds up to 1 s
    h.advance(500);
    expect(await run(f)).toBeUndefined();

    const fast = harness().filter({ name: 'fast', key: [{ value: 'x' }], limit: { requests: 10, per: '1s' } });
    expect(await statuses(fast, 11)).toEqual([...Array(10).fill(200), 429]);
    const r2 = await run(fast);
    expect(r2!.headers!['retry-after']).toBe('1'); // 100 ms to the next token: at least 1
    expect(r2!.headers!.ratelimit).toBe('"fast";r=0;t=1');
  });

  it('refills continuously on the injected clock (burst, then the steady rate)', async () => {
    const h = harness();
    const f = h.filter({ name: 'burst', key: [{ value: 'x' }], limit: { requests: 2, per: '1s', burst: 4 } });
    expect(await statuses(f, 5)).toEqual([200, 200, 200, 200, 429]);
    h.advance(499);
    expect(await statuses(f, 1)).toEqual([429]);
    h.advance(1);
    expect(await statuses(f, 2)).toEqual([200, 429]);
    h.advance(10_000);
    expect(await statuses(f, 5)).toEqual([200, 200, 200, 200, 429]);
  });
});

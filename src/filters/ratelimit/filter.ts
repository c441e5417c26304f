import type { Config } from '../../config/schema/index.js';
import { msOf } from '../../config/duration.js';
import type { Filter, FilterResponse, FilterResult, RequestContext } from '../filter.js';
import { counter } from '../../observability/metrics.js';
import type { Decision } from './store.js';
import type { LeasingStore } from './leasing-store.js';
import type { Rate } from './token-bucket.js';
import { compileGlob } from '../authz/matchers.js';
import { claimValue } from '../authn/jwt.js';

type Policy = Config['rateLimits'][number];
type KeyPart = Policy['key'][number];

const decisions = counter('meridian_ratelimit_decisions_total', 'Rate-limit decisions by policy', [
  'policy',
  'decision',
]);

/** A policy compiled once per snapshot. */
interface Compiled {
  name: string;
  keyOf: (ctx: RequestContext) => string | undefined;
  rateFor: (key: string) => { rate: Rate; requests: number; windowSec: number };
  store: LeasingStore;
  want: number | undefined;
  failOpen: boolean;
  headersOnSuccess: boolean;
  counters: Record<'allowed' | 'limited' | 'failed_open' | 'failed_closed', { inc(): void }>;
}

function rateOf(limit: Policy['limit']) {
  const perMs = msOf(limit).per;
  return {
    rate: { perMs: limit.requests / perMs, capacity: limit.burst ?? limit.requests },
    requests: limit.requests,
    windowSec: Math.max(1, Math.round(perMs / 1000)),
  };
}

function keyPart(p: KeyPart): (ctx: RequestContext) => string | undefined {
  if (p.header) {
    const name = p.header.toLowerCase();
    return (ctx) => {
      const v = ctx.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
  }
  if (p.claim) {
    const name = p.claim;
    const path = name.split('.');
    // As RBAC and forwarded claims read them: exact name first, then dotted path. Only a scalar is a
    // key; an object or array claim counts as missing (else they would all share one bucket).
    return (ctx) => {
      const v = ctx.claims ? claimValue(ctx.claims, name, path) : undefined;
      return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
    };
  }
  if (p.value !== undefined) return () => p.value;
  switch (p.source) {
    case 'clientIp':
      return (ctx) => ctx.clientIp;
    case 'consumer':
      return (ctx) => ctx.consumer;
    case 'spiffeId':
      return (ctx) => ctx.peer?.spiffeId;
    default:
      return (ctx) => ctx.routeName;
  }
}

/** Compile a policy: key parts joined by "|", overrides by glob on the joined key. */
export function compilePolicy(p: Policy, store: LeasingStore): Compiled {
  const parts = p.key.map(keyPart);
  const fallback = p.onMissingKey === 'default';
  const base = rateOf(p.limit);
  const overrides = p.overrides.map((o) => ({ test: compileGlob(o.match), limit: rateOf(o.limit) }));
  return {
    name: p.name,
    keyOf: (ctx) => {
      let key = '';
      for (const part of parts) {
        const v = part(ctx);
        if (v === undefined) return fallback ? '__default__' : undefined;
        key = key ? `${key}|${v}` : v;
      }
      return key;
    },
    rateFor: overrides.length === 0 ? () => base : (key) => overrides.find((o) => o.test(key))?.limit ?? base,
    store,
    want: p.store === 'redis' ? p.batch : undefined,
    failOpen: p.failureMode === 'open',
    headersOnSuccess: p.headersOnSuccess,
    counters: {
      allowed: decisions.labels(p.name, 'allowed'),
      limited: decisions.labels(p.name, 'limited'),
      failed_open: decisions.labels(p.name, 'failed_open'),
      failed_closed: decisions.labels(p.name, 'failed_closed'),
    },
  };
}

type Outcome =
  | { policy: Compiled; decision: Decision; requests: number; windowSec: number }
  | { policy: Compiled; failed: true };

/**
 * Rate limiting for a route: every policy with a key decides (token bucket in its store); the
 * strictest wins. Refusal: 429 with Retry-After and the IETF draft RateLimit-Policy / RateLimit headers.
 * A store failure follows the policy's failure mode: open admits, closed answers 503.
 */
export function createRateLimitFilter(policies: Compiled[]): Filter {
  // One policy (the common case) decides without collecting outcomes in an array.
  const only = policies.length === 1 ? policies[0] : undefined;
  return {
    name: 'ratelimit',
    onRequest(ctx): FilterResult | Promise<FilterResult> {
      if (only) {
        const o = outcomeOf(only, ctx);
        if (o === undefined) return undefined;
        return o instanceof Promise ? o.then((r) => decide(ctx, [r])) : decideOne(ctx, o);
      }
      const pending: Array<Outcome | Promise<Outcome>> = [];
      let async = false;
      for (const policy of policies) {
        const o = outcomeOf(policy, ctx);
        if (o === undefined) continue;
        if (o instanceof Promise) async = true;
        pending.push(o);
      }
      if (!async) return decide(ctx, pending as Outcome[]);
      return Promise.all(pending).then((outcomes) => decide(ctx, outcomes));
    },
  };
}

/** One policy's decision for a request; undefined when the request has no key for it. */
function outcomeOf(policy: Compiled, ctx: RequestContext): Outcome | Promise<Outcome> | undefined {
  const key = policy.keyOf(ctx);
  if (key === undefined) return undefined;
  const { rate, requests, windowSec } = policy.rateFor(key);
  let d: Decision | Promise<Decision>;
  try {
    d = policy.store.take(`${policy.name}|${key}`, rate, policy.want);
  } catch {
    return { policy, failed: true };
  }
  if (d instanceof Promise)
    return d.then(
      (decision) => ({ policy, decision, requests, windowSec }),
      () => ({ policy, failed: true as const }),
    );
  return { policy, decision: d, requests, windowSec };
}

/** The synchronous single-policy case: an admission without response headers allocates nothing more. */
function decideOne(ctx: RequestContext, o: Outcome): FilterResult {
  if (!('failed' in o) && o.decision.allowed && !o.policy.headersOnSuccess) {
    o.policy.counters.allowed.inc();
    return undefined;
  }
  return decide(ctx, [o]);
}

/** A refusal beats an admission; of two refusals the longer wait wins (Retry-After), of two admissions the fewer tokens left. */
function stricter(a: Decision, b: Decision): boolean {
  if (a.allowed !== b.allowed) return !a.allowed;
  return a.allowed ? a.remaining < b.remaining : a.retryAfterMs > b.retryAfterMs;
}

function decide(ctx: RequestContext, outcomes: Outcome[]): FilterResult {
  let worst: Extract<Outcome, { decision: Decision }> | undefined;
  for (const o of outcomes) {
    if ('failed' in o) {
      if (o.policy.failOpen) {
        o.policy.counters.failed_open.inc();
        continue;
      }
      o.policy.counters.failed_closed.inc();
      return { status: 503, code: 'overloaded', headers: { 'retry-after': '1' } };
    }
    o.policy.counters[o.decision.allowed ? 'allowed' : 'limited'].inc();
    if (!worst || stricter(o.decision, worst.decision)) worst = o;
  }
  if (!worst) return undefined;
  const d = worst.decision;
  const reset = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
  const headers = {
    'ratelimit-policy': `"${worst.policy.name}";q=${worst.requests};w=${worst.windowSec}`,
    ratelimit: `"${worst.policy.name}";r=${d.remaining};t=${d.allowed ? worst.windowSec : reset}`,
  };
  if (!d.allowed)
    return {
      status: 429,
      code: 'rate_limited',
      headers: { ...headers, 'retry-after': String(reset) },
      body: 'rate limited\n',
    } satisfies FilterResponse;
  if (worst.policy.headersOnSuccess)
    ctx.responseHeaders.push('ratelimit-policy', headers['ratelimit-policy'], 'ratelimit', headers.ratelimit);
  return undefined;
}

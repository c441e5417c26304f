import type { Logger } from 'pino';
import type { PermissionConfig, PrincipalConfig, RbacPolicyConfig } from '../../config/schema/auth.js';
import type { Filter, FilterResponse, RequestContext } from '../filter.js';
import { counter } from '../../observability/metrics.js';
import { compileCidr, compileGlob, compileGlobs } from './matchers.js';

export type { RbacPolicyConfig } from '../../config/schema/auth.js';

type Test = (ctx: RequestContext) => boolean;

const decisions = counter(
  'meridian_rbac_decisions_total',
  'RBAC decisions per policy (shadow: dry-run, not enforced)',
  ['policy', 'decision', 'shadow'],
);

const FORBIDDEN: FilterResponse = Object.freeze({ status: 403, code: 'forbidden' as const, body: 'forbidden\n' });

/** Outcome of one policy evaluation: the decision and the index of the deciding rule (-1: default deny). */
export interface RbacDecision {
  allowed: boolean;
  rule: number;
}

/** A compiled policy: evaluate a request against it without any per-request compilation. */
export interface CompiledPolicy {
  readonly name: string;
  readonly shadow: boolean;
  evaluate(ctx: RequestContext): RbacDecision;
}

const ALLOW_NONE: RbacDecision = Object.freeze({ allowed: false, rule: -1 });

/**
 * Compile a policy. A rule matches when any of its principals AND any of its permissions match.
 * Deny rules are checked first and win; then the first matching allow rule allows; no match is a
 * deny (default deny once a policy is attached).
 */
export function compilePolicy(policy: RbacPolicyConfig): CompiledPolicy {
  const rules = policy.rules.map((r, index) => {
    const principals = r.principals.map(principalTest);
    const permissions = r.permissions.map(permissionTest);
    const test: Test = (ctx) => some(principals, ctx) && some(permissions, ctx);
    return { deny: r.action === 'deny', test, decision: Object.freeze({ allowed: r.action === 'allow', rule: index }) };
  });
  const ordered = [...rules.filter((r) => r.deny), ...rules.filter((r) => !r.deny)];
  return {
    name: policy.name,
    shadow: policy.shadow,
    evaluate(ctx) {
      for (const r of ordered) if (r.test(ctx)) return r.decision;
      return ALLOW_NONE;
    },
  };
}

function some(tests: readonly Test[], ctx: RequestContext): boolean {
  for (const t of tests) if (t(ctx)) return true;
  return false;
}

/** One principal (the schema guarantees exactly one key). */
export function principalTest(p: PrincipalConfig): Test {
  if (p.spiffeId !== undefined) {
    const m = compileGlob(p.spiffeId);
    return (ctx) => ctx.peer?.spiffeId !== undefined && m(ctx.peer.spiffeId);
  }
  if (p.claim) return claimTest(p.claim);
  if (p.consumer !== undefined) {
    const m = compileGlob(p.consumer);
    return (ctx) => ctx.consumer !== undefined && m(ctx.consumer);
  }
  if (p.sourceCidr !== undefined) {
    const m = compileCidr(p.sourceCidr);
    return (ctx) => m(ctx.clientIp);
  }
  if (p.authenticated) return (ctx) => ctx.claims !== undefined || ctx.consumer !== undefined || ctx.peer !== undefined;
  if (p.any) return () => true;
  return () => false; // unreachable with a validated config; fail closed
}

type ClaimMatch = NonNullable<PrincipalConfig['claim']>;

/**
 * Claim principal over verified JWT claims. The claim is found by exact name first (URL-like names
 * contain dots), else by dotted path. `equals`: a scalar equal to the value. `contains`: an array
 * holding the value, or a space-delimited string (OAuth `scope`) with it as a token. `in`: a scalar
 * among the values. Numbers and booleans compare by their text.
 */
function claimTest(c: ClaimMatch): Test {
  const path = c.name.split('.');
  const set = c.in ? new Set(c.in) : undefined;
  return (ctx) => {
    const claims = ctx.claims;
    if (!claims) return false;
    const v = lookup(claims, c.name, path);
    if (c.equals !== undefined) return isScalar(v) && String(v) === c.equals;
    if (set) return isScalar(v) && set.has(String(v));
    if (c.contains !== undefined) {
      if (Array.isArray(v)) return v.some((x) => isScalar(x) && String(x) === c.contains);
      return typeof v === 'string' && hasToken(v, c.contains);
    }
    return false;
  };
}

function lookup(claims: Record<string, unknown>, name: string, path: readonly string[]): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let v: unknown = claims;
  for (const part of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function isScalar(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** "read admin write" has token "admin" (not "adm"). */
function hasToken(s: string, token: string): boolean {
  let at = s.indexOf(token);
  while (at !== -1) {
    const end = at + token.length;
    if ((at === 0 || s[at - 1] === ' ') && (end === s.length || s[end] === ' ')) return true;
    at = s.indexOf(token, at + 1);
  }
  return false;
}

/** One permission: every field given must match (methods AND paths AND all headers). */
export function permissionTest(p: PermissionConfig): Test {
  const methods = p.methods ? new Set(p.methods.map((m) => m.toUpperCase())) : undefined;
  const paths = p.paths ? compileGlobs(p.paths) : undefined;
  const headers = (p.headers ?? []).map(headerTest);
  return (ctx) => {
    if (methods && !methods.has(ctx.method)) return false;
    if (paths && !paths(ctx.path)) return false;
    for (const h of headers) if (!h(ctx)) return false;
    return true;
  };
}

function headerTest(h: NonNullable<PermissionConfig['headers']>[number]): Test {
  const name = h.name.toLowerCase();
  const one = (v: string) =>
    h.exact !== undefined ? v === h.exact : h.prefix !== undefined ? v.startsWith(h.prefix) : true;
  return (ctx) => {
    const raw = ctx.headers[name];
    if (h.present !== undefined) return (raw !== undefined) === h.present;
    if (raw === undefined) return false;
    return Array.isArray(raw) ? raw.some(one) : one(raw);
  };
}

/**
 * The RBAC filter of a route, compiled once per snapshot. 403 when denied; in shadow mode the
 * decision is only logged and counted (`meridian_rbac_decisions_total{shadow="true"}`) and the
 * request continues. Paths are the normalized path, so `/admin/../public` or `/%61dmin` are judged
 * as what they are.
 */
export function createRbacFilter(policy: RbacPolicyConfig, logger: Logger): Filter {
  const compiled = compilePolicy(policy);
  const shadow = String(policy.shadow);
  const allowCount = decisions.labels(policy.name, 'allow', shadow);
  const denyCount = decisions.labels(policy.name, 'deny', shadow);
  return {
    name: 'rbac',
    onRequest(ctx) {
      const d = compiled.evaluate(ctx);
      if (d.allowed) {
        allowCount.inc();
        return undefined;
      }
      denyCount.inc();
      const who = {
        policy: policy.name,
        rule: d.rule,
        method: ctx.method,
        path: ctx.path,
        spiffeId: ctx.peer?.spiffeId,
        consumer: ctx.consumer,
        sub: ctx.claims?.sub,
        requestId: ctx.requestId,
      };
      if (policy.shadow) {
        logger.info({ ...who, shadow: true }, 'rbac would deny (shadow)');
        return undefined;
      }
      logger.info(who, 'rbac denied');
      return FORBIDDEN;
    },
  };
}

import { BlockList, isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import type { Static } from '@sinclair/typebox';
import type { PermissionSchema, PrincipalSchema, RbacPolicySchema } from '../../config/schema/auth.js';
import type { Filter, RequestContext } from '../filter.js';
import { counter } from '../../observability/metrics.js';

export type RbacPolicyConfig = Static<typeof RbacPolicySchema>;
type Principal = Static<typeof PrincipalSchema>;
type Permission = Static<typeof PermissionSchema>;
type Test = (ctx: RequestContext) => boolean;

const decisions = counter('meridian_rbac_decisions_total', 'RBAC decisions', ['policy', 'decision', 'shadow']);

/** Glob with `*` matching any run of characters (including "/"), compiled to an anchored regex. */
export function globToRegex(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/** Read a dotted claim path ("realm_access.roles") from verified claims. */
function claimAt(claims: Record<string, unknown> | undefined, path: string): unknown {
  let v: unknown = claims;
  for (const part of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

function principalTest(p: Principal): Test {
  const tests: Test[] = [];
  if (p.spiffeId !== undefined) {
    const re = globToRegex(p.spiffeId);
    tests.push((ctx) => ctx.peer?.spiffeId !== undefined && re.test(ctx.peer.spiffeId));
  }
  if (p.claim) tests.push(claimTest(p.claim));
  if (p.consumer !== undefined) tests.push((ctx) => ctx.consumer === p.consumer);
  if (p.sourceCidr !== undefined) tests.push(cidrTest(p.sourceCidr));
  if (p.authenticated) tests.push((ctx) => ctx.claims !== undefined || ctx.consumer !== undefined || ctx.peer !== undefined);
  if (tests.length === 0) return () => Boolean(p.any);
  return (ctx) => tests.every((t) => t(ctx));
}

function claimTest(c: NonNullable<Principal['claim']>): Test {
  return (ctx) => {
    const v = claimAt(ctx.claims, c.name);
    if (v === undefined) return false;
    const values = Array.isArray(v) ? v.map(String) : typeof v === 'string' && c.contains !== undefined ? v.split(' ') : [String(v)];
    if (c.equals !== undefined && !(values.length === 1 && values[0] === c.equals)) return false;
    if (c.contains !== undefined && !values.includes(c.contains)) return false;
    if (c.in !== undefined && !values.some((x) => c.in!.includes(x))) return false;
    return true;
  };
}

function cidrTest(cidr: string): Test {
  const [ip, bits] = cidr.split('/');
  const list = new BlockList();
  const family = isIPv4(ip) ? 'ipv4' : 'ipv6';
  list.addSubnet(ip, Number(bits ?? (family === 'ipv4' ? 32 : 128)), family);
  return (ctx) => {
    try {
      return list.check(ctx.clientIp, isIPv4(ctx.clientIp) ? 'ipv4' : 'ipv6');
    } catch {
      return false;
    }
  };
}

function permissionTest(p: Permission): Test {
  const methods = p.methods ? new Set(p.methods.map((m) => m.toUpperCase())) : undefined;
  const paths = p.paths?.map(globToRegex);
  const headers = (p.headers ?? []).map((h) => {
    const name = h.name.toLowerCase();
    return (ctx: RequestContext) => {
      const raw = ctx.headers[name];
      const v = Array.isArray(raw) ? raw.join(',') : raw;
      if (h.exact !== undefined) return v === h.exact;
      if (h.prefix !== undefined) return v !== undefined && v.startsWith(h.prefix);
      return (v !== undefined) === (h.present ?? true);
    };
  });
  return (ctx) => (!methods || methods.has(ctx.method)) && (!paths || paths.some((re) => re.test(ctx.path))) && headers.every((t) => t(ctx));
}

/**
 * One RBAC policy, compiled once per snapshot. A rule matches when any of its principals and any of
 * its permissions match. Deny rules win over allow rules; when no rule allows, the request is denied
 * (403). In shadow mode the decision is only logged and counted. Paths are the normalized path, so
 * `/admin/../public` or `/%61dmin` are judged as what they are.
 */
export function createRbacFilter(policy: RbacPolicyConfig, logger: Logger): Filter {
  const rules = policy.rules.map((r) => {
    const principals = r.principals.map(principalTest);
    const permissions = r.permissions.map(permissionTest);
    return { deny: r.action === 'deny', test: (ctx: RequestContext) => principals.some((t) => t(ctx)) && permissions.some((t) => t(ctx)) };
  });
  const shadow = String(policy.shadow);
  const counters = { allow: decisions.labels(policy.name, 'allow', shadow), deny: decisions.labels(policy.name, 'deny', shadow) };
  return {
    name: 'rbac',
    onRequest(ctx) {
      const denied = rules.some((r) => r.deny && r.test(ctx)) || !rules.some((r) => !r.deny && r.test(ctx));
      counters[denied ? 'deny' : 'allow'].inc();
      if (!denied) return undefined;
      if (policy.shadow) {
        logger.info({ policy: policy.name, path: ctx.path, method: ctx.method, shadow: true }, 'rbac would deny');
        return undefined;
      }
      return { status: 403, code: 'forbidden', body: 'forbidden\n' };
    },
  };
}

import type { Config } from './schema/index.js';
import type { ConfigError } from './config-error.js';
import { existsSync } from 'node:fs';
import { isLoopbackHost, isValidDnsServer, splitAddress } from '../common/address.js';
import { msOf } from './duration.js';
import { authConfigErrors } from './schema/auth.js';

type Named = { name: string };

/** Cross-field checks the schema cannot express: unique names, references, one action per route. */
export function checkReferences(config: Config): ConfigError[] {
  const errors: ConfigError[] = [];
  const add = (path: string, message: string) => errors.push({ path, message });
  const clusters = uniqueNames(config.clusters, 'clusters', add);
  const routes = uniqueNames(config.routes, 'routes', add);
  uniqueNames(config.listeners, 'listeners', add);
  const rbac = uniqueNames(config.rbac, 'rbac', add);
  const rateLimits = uniqueNames(config.rateLimits, 'rateLimits', add);
  const authNames = uniqueAuthNames(config.auth, add);

  config.routes.forEach((r, i) => {
    const p = `routes[${i}]`;
    checkRouteAction(r, p, clusters, add);
    checkRegex(r.match.path?.regex, `${p}.match.path.regex`, add);
    r.match.headers?.forEach((h, j) => checkRegex(h.regex, `${p}.match.headers[${j}].regex`, add));
    r.match.query?.forEach((q, j) => checkRegex(q.regex, `${p}.match.query[${j}].regex`, add));
    const pathKinds = ['prefix', 'exact', 'regex'].filter(
      (k) => r.match.path && (r.match.path as Record<string, unknown>)[k] !== undefined,
    );
    if (pathKinds.length > 1) add(`${p}.match.path`, 'set only one of prefix, exact, regex');
    if (r.mirror && !clusters.has(r.mirror.cluster))
      add(`${p}.mirror.cluster`, `unknown cluster "${r.mirror.cluster}"`);
    r.auth?.forEach((n, j) => authNames.has(n) || add(`${p}.auth[${j}]`, `unknown auth provider "${n}"`));
    if (r.rbac && !rbac.has(r.rbac)) add(`${p}.rbac`, `unknown rbac policy "${r.rbac}"`);
    r.rateLimits?.forEach(
      (n, j) => rateLimits.has(n) || add(`${p}.rateLimits[${j}]`, `unknown rate limit policy "${n}"`),
    );
  });
  config.listeners.forEach((l, i) => checkListener(l, `listeners[${i}]`, routes, add));
  checkSvid(config, add);
  config.clusters.forEach((c, i) => checkCluster(c, `clusters[${i}]`, config, add));
  checkAdmin(config, add);
  config.gateway.dns?.servers.forEach(
    (s, i) =>
      isValidDnsServer(s) || add(`gateway.dns.servers[${i}]`, `expected ip, ip:port or [ipv6]:port, got "${s}"`),
  );
  for (const [path, message] of authConfigErrors(config.auth, config.rbac)) add(path, message);
  checkFiles(config, add);
  if (config.configStore && config.managementServer)
    add(
      'configStore',
      'configStore and managementServer are alternatives: replicas of a managed gateway get their config from the hub',
    );
  config.rateLimits.forEach((p, i) => {
    if (p.store === 'redis' && !config.redis)
      add(`rateLimits[${i}].store`, 'store "redis" needs a top-level redis section');
  });
  return errors;
}

type Add = (path: string, message: string) => void;

/** JWT providers and API-key sets share one namespace: a route's `auth` names either. */
function uniqueAuthNames(auth: Config['auth'], add: Add): Set<string> {
  const names = new Set<string>();
  const entries = [
    ...auth.jwtProviders.map((p, i) => [p.name, `auth.jwtProviders[${i}].name`]),
    ...auth.apiKeys.map((k, i) => [k.name, `auth.apiKeys[${i}].name`]),
  ];
  for (const [name, path] of entries) {
    if (names.has(name)) add(path, `duplicate name "${name}" (JWT providers and API-key sets share names)`);
    names.add(name);
  }
  return names;
}

function uniqueNames(items: Named[], section: string, add: Add): Set<string> {
  const names = new Set<string>();
  items.forEach((item, i) => {
    if (names.has(item.name)) add(`${section}[${i}].name`, `duplicate name "${item.name}"`);
    names.add(item.name);
  });
  return names;
}

function checkRouteAction(r: Config['routes'][number], p: string, clusters: Set<string>, add: Add) {
  const actions = (['cluster', 'weightedClusters', 'redirect', 'directResponse'] as const).filter(
    (k) => r[k] !== undefined,
  );
  if (actions.length !== 1)
    add(
      p,
      `a route needs exactly one of cluster, weightedClusters, redirect, directResponse (found ${actions.length ? actions.join(', ') : 'none'})`,
    );
  if (r.cluster !== undefined && !clusters.has(r.cluster)) add(`${p}.cluster`, `unknown cluster "${r.cluster}"`);
  r.weightedClusters?.forEach(
    (w, j) => clusters.has(w.cluster) || add(`${p}.weightedClusters[${j}].cluster`, `unknown cluster "${w.cluster}"`),
  );
  if (r.weightedClusters?.every((w) => w.weight === 0))
    add(`${p}.weightedClusters`, 'at least one weight must be positive');
  if (r.rewrite?.path !== undefined && r.rewrite.pathPrefix !== undefined)
    add(`${p}.rewrite`, 'set rewrite.path (the whole path) or rewrite.pathPrefix (the matched part), not both');
  if (r.retry?.maxBodyBytes !== undefined && r.retry.bufferBytes !== undefined)
    add(`${p}.retry`, 'set retry.maxBodyBytes (bufferBytes is its earlier name), not both');
  if (r.redirect?.path !== undefined && r.redirect.pathPrefix !== undefined)
    add(`${p}.redirect`, 'set redirect.path (the whole path) or redirect.pathPrefix (the matched part), not both');
}

function checkRegex(source: string | undefined, path: string, add: Add) {
  if (source === undefined) return;
  try {
    new RegExp(source);
  } catch (e) {
    add(path, `invalid regular expression: ${(e as Error).message}`);
  }
}

function checkListener(l: Config['listeners'][number], p: string, routes: Set<string>, add: Add) {
  l.routes?.forEach((n, j) => routes.has(n) || add(`${p}.routes[${j}]`, `unknown route "${n}"`));
  if (l.protocol === 'https' && !(l.tls?.cert && l.tls?.key) && !l.tls?.certificates?.length && !l.tls?.svid)
    add(`${p}.tls`, 'https needs tls.cert and tls.key (or tls.certificates, or tls.svid)');
  if (l.tls?.requireClientCert && !l.tls.ca && !l.tls.svid)
    add(`${p}.tls.ca`, 'requireClientCert needs a ca bundle (or tls.svid)');
  if ((l.tls?.cert === undefined) !== (l.tls?.key === undefined))
    add(`${p}.tls`, 'cert and key must be given together');
}

/** SVIDs come from the hub (managementServer.svid) and replace files: never both on one listener or link. */
function checkSvid(config: Config, add: Add) {
  const ms = config.managementServer;
  config.listeners.forEach((l, i) => {
    if (!l.tls?.svid) return;
    if (!ms?.svid) add(`listeners[${i}].tls.svid`, 'tls.svid needs managementServer.svid: true');
    const files = (['cert', 'key', 'ca', 'certificates'] as const).filter((f) => l.tls?.[f] !== undefined);
    if (files.length) add(`listeners[${i}].tls`, `tls.svid replaces ${files.join(', ')}: set one or the other`);
  });
  if (ms?.svid && ms.eastWest?.tls)
    add('managementServer.eastWest.tls', 'with managementServer.svid the SVID is the east-west credential: drop tls');
}

function checkCluster(c: Config['clusters'][number], p: string, config: Config, add: Add) {
  const max = config.gateway.limits.maxEndpointsPerCluster;
  if (max > 0 && c.endpoints.length > max) {
    add(`${p}.endpoints`, `${c.endpoints.length} endpoints is over gateway.limits.maxEndpointsPerCluster (${max})`);
  }
  const seen = new Set<string>();
  c.endpoints.forEach((e, j) => {
    if (seen.has(e.address)) add(`${p}.endpoints[${j}].address`, `duplicate endpoint "${e.address}"`);
    seen.add(e.address);
  });
  if (c.kind === 'aggregate') {
    if (!c.clusters?.length) add(`${p}.clusters`, 'an aggregate cluster lists its member clusters');
    c.clusters?.forEach((n, j) => {
      const member = config.clusters.find((x) => x.name === n);
      if (!member) add(`${p}.clusters[${j}]`, `unknown cluster "${n}"`);
      else if (member.kind === 'aggregate')
        add(`${p}.clusters[${j}]`, 'an aggregate cluster cannot contain another aggregate');
    });
    if (c.endpoints.length) add(`${p}.endpoints`, 'an aggregate cluster has no endpoints of its own');
  }
  if (c.discovery) checkDiscovery(c, `${p}.discovery`, add);
  if (c.lb.slowStart && c.lb.policy !== 'round_robin' && c.lb.policy !== 'least_request')
    add(`${p}.lb.slowStart`, 'slow start applies to round_robin and least_request only');
  if (c.healthCheck && !c.healthCheck.http && !c.healthCheck.tcp) add(`${p}.healthCheck`, 'set http or tcp');
  if (c.upstreamTls && (c.upstreamTls.cert === undefined) !== (c.upstreamTls.key === undefined))
    add(`${p}.upstreamTls`, 'cert and key must be given together');
}

/** A discovered cluster takes every endpoint from its one source: no static list beside it, no aggregate. */
function checkDiscovery(c: Config['clusters'][number], p: string, add: Add) {
  const discovery = c.discovery!;
  if (c.kind === 'aggregate')
    add(p, 'an aggregate cluster has no endpoints of its own: set discovery on its member clusters');
  else if (c.endpoints.length)
    add(p, 'discovery and endpoints are alternatives: a discovered cluster takes its endpoints from discovery only');
  const sources = (['dns', 'kubernetes'] as const).filter((k) => discovery[k]);
  if (sources.length !== 1)
    add(p, sources.length ? `set one source, not ${sources.join(' and ')}` : 'set dns or kubernetes');
  if (discovery.dns && msOf(discovery.dns).refresh < 1) add(`${p}.dns.refresh`, 'refresh must be at least 1ms');
}

/** Files the snapshot will read (JWKS, API keys): missing ones are config errors, not runtime crashes. */
function checkFiles(config: Config, add: Add) {
  config.auth.jwtProviders.forEach((p, i) => {
    if ('file' in p.jwks && !existsSync(p.jwks.file))
      add(`auth.jwtProviders[${i}].jwks.file`, `file not found: ${p.jwks.file}`);
  });
  config.auth.apiKeys.forEach((k, i) => {
    if (k.file && !existsSync(k.file)) add(`auth.apiKeys[${i}].file`, `file not found: ${k.file}`);
  });
  const exists = (path: string, f: string | undefined) => {
    if (f && !existsSync(f)) add(path, `file not found: ${f}`);
  };
  config.listeners.forEach((l, i) => {
    const t = l.tls;
    for (const field of ['cert', 'key', 'ca'] as const) exists(`listeners[${i}].tls.${field}`, t?.[field]);
    t?.certificates?.forEach((c, j) => {
      exists(`listeners[${i}].tls.certificates[${j}].cert`, c.cert);
      exists(`listeners[${i}].tls.certificates[${j}].key`, c.key);
    });
  });
  config.clusters.forEach((c, i) => {
    for (const field of ['ca', 'cert', 'key'] as const)
      exists(`clusters[${i}].upstreamTls.${field}`, c.upstreamTls?.[field]);
  });
  exists('gateway.kubernetes.kubeconfig', config.gateway.kubernetes?.kubeconfig);
}

function checkAdmin(config: Config, add: Add) {
  const { host } = splitAddress(config.admin.address);
  const hasToken = Boolean(config.admin.token || config.admin.tokens?.length);
  if (!isLoopbackHost(host) && !hasToken && !config.admin.insecure) {
    add(
      'admin.address',
      'a non-loopback admin address requires admin.token or admin.tokens (refusing to expose an unauthenticated admin API; admin.insecure: true overrides)',
    );
  }
}

import { createHash } from 'node:crypto';
import { formatAddress } from '../../../common/address.js';
import {
  GATEWAY_GROUP,
  type Condition,
  type Gateway,
  type GatewayApiObjects,
  type GatewayListener,
  type HTTPBackendRef,
  type HTTPRoute,
  type HTTPRouteMatch,
  type HTTPRouteRule,
  type ParentReference,
  type Service,
} from './objects.js';

/** `gateway.gatewayApi` in the gateway's config. */
export interface GatewayApiSettings {
  /** GatewayClasses naming this controller are ours. */
  controllerName: string;
  /** Where a Gateway's listeners are opened (the host part of each Meridian listener address). */
  address: string;
  /**
   * A pool of addresses, one per Gateway (as a LoadBalancer gives each its own IP), so that two Gateways
   * may both listen on port 80. Without it every Gateway opens on `address`.
   */
  addresses?: string[];
  /** Gateway listener port -> the local port it is opened on (e.g. 80 -> 18080 for a non-root process). */
  portMap?: Record<string, number>;
  /** Where the source writes a certificateRefs Secret's PEM (the listener config names files). */
  certificateFile(secret: { namespace: string; name: string }, part: 'crt' | 'key'): string;
}

/** A Meridian listener, route or cluster as plain config input (validated when the source applies it). */
type ConfigInput = Record<string, unknown> & { name: string };

/** A TLS Secret a listener serves, to be written where `certificateFile` says. */
export interface CertificateToWrite {
  namespace: string;
  name: string;
  cert: string;
  key: string;
}

export interface ListenerStatus {
  name: string;
  supportedKinds: Array<{ group: string; kind: string }>;
  attachedRoutes: number;
  conditions: Condition[];
}

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions: Condition[];
}

/** The status each object should have after this translation (written back by the source). */
export interface TranslatedStatus {
  /** By GatewayClass name. */
  gatewayClasses: Map<string, Condition[]>;
  /** By "namespace/name": conditions, listeners and the address they open on (none when not assigned). */
  gateways: Map<string, { conditions: Condition[]; listeners: ListenerStatus[]; address?: string }>;
  /** By "namespace/name": the parents this controller owns. */
  httpRoutes: Map<string, RouteParentStatus[]>;
}

export interface Translation {
  listeners: ConfigInput[];
  routes: ConfigInput[];
  clusters: ConfigInput[];
  certificates: CertificateToWrite[];
  status: TranslatedStatus;
  /** Route config name -> the HTTPRoute ("namespace/name") it came from, to blame a validation error on. */
  routeOwners: Map<string, string>;
}

/** What translate() reads besides the objects: HTTPRoutes ("namespace/name") refused for a reason found later (validation). */
export interface TranslateOptions {
  refused?: ReadonlyMap<string, string>;
}

/** Every name the translation makes starts with this, so its resources are told apart from the admin API's. */
export const GATEWAY_API_PREFIX = 'gwapi.';

const HTTP_ROUTE_KIND = { group: GATEWAY_GROUP, kind: 'HTTPRoute' };

/**
 * Gateway API objects -> Meridian listeners, routes and clusters, plus the status every object should
 * carry. Pure: the same objects always give the same config (sorted, named deterministically), so an
 * unrelated watch event yields an identical config and the config service treats it as no change.
 *
 * - GatewayClasses whose `controllerName` is ours are Accepted; Gateways of those classes are ours.
 * - Each HTTP/HTTPS listener of our Gateways opens on the Gateway's address (`address`, or its own from
 *   the `addresses` pool: assignAddresses) and its (mapped) port. Listeners that share an address and
 *   port, within a Gateway or across Gateways, share one Meridian listener (one socket); their routes are
 *   told apart by host, as the Gateway API requires hostnames to be distinct per port.
 * - Each HTTPRoute attaches to the listeners its parentRefs select (sectionName, port) that allow it
 *   (allowedRoutes: namespaces Same / All / Selector) and whose hostname intersects the route's. Each
 *   rule x match becomes one Meridian route, ordered by the Gateway API's precedence (below).
 * - backendRefs to Services become clusters with `discovery.kubernetes` (pods from EndpointSlices);
 *   several become a weighted split. A rule with no usable backend answers 500, as the spec says.
 *
 * Precedence. Meridian's route table picks by host (exact, then the longest wildcard, then host-less),
 * then path (exact, then the first matching regex, then the longest prefix), then config order among
 * ties. The Gateway API's rules are the same for hosts, exact paths and prefixes; among equal paths it
 * prefers a method match, then more header matches, then more query matches, then the older route, then
 * namespace/name: the translation emits routes in that order, so config order breaks the ties the same
 * way. Regular expressions are "implementation-specific" in the spec; here they come before prefixes.
 */
export function translate(
  objects: GatewayApiObjects,
  settings: GatewayApiSettings,
  options: TranslateOptions = {},
): Translation {
  const status: TranslatedStatus = { gatewayClasses: new Map(), gateways: new Map(), httpRoutes: new Map() };
  const ourClasses = new Set<string>();
  for (const gc of objects.gatewayClasses) {
    if (gc.spec.controllerName !== settings.controllerName) continue;
    ourClasses.add(gc.metadata.name);
    status.gatewayClasses.set(gc.metadata.name, [
      condition('Accepted', true, 'Accepted', 'handled by Meridian', gc.metadata.generation),
    ]);
  }

  const secrets = new Map(objects.secrets.map((s) => [key(s.metadata.namespace, s.metadata.name), s]));
  const services = new Map(objects.services.map((s) => [key(s.metadata.namespace, s.metadata.name), s]));
  const namespaceLabels = new Map(objects.namespaces.map((n) => [n.metadata.name, n.metadata.labels ?? {}]));
  const certificates = new Map<string, CertificateToWrite>();
  const ports = new Map<string, PortGroup>();
  const attached: AttachedListener[] = [];

  const gateways = sortByAge(objects.gateways.filter((g) => ourClasses.has(g.spec.gatewayClassName)));
  const addresses = assignAddresses(gateways, settings);
  for (const gw of gateways) {
    const gwKey = key(gw.metadata.namespace, gw.metadata.name);
    const listenerStatuses: ListenerStatus[] = [];
    let programmed = 0;
    const seen = new Map<string, string>();
    const address = addresses.get(gwKey)!;
    for (const l of gw.spec.listeners) {
      const gen = gw.metadata.generation;
      const localPort = settings.portMap?.[String(l.port)] ?? l.port;
      const ls: ListenerStatus = { name: l.name, supportedKinds: [HTTP_ROUTE_KIND], attachedRoutes: 0, conditions: [] };
      listenerStatuses.push(ls);
      const problem =
        'problem' in address
          ? { accepted: true, resolved: true, conflicted: false, ...address.problem }
          : listenerProblem(l, gw, secrets, seen);
      if (problem) {
        ls.supportedKinds = l.protocol === 'HTTP' || l.protocol === 'HTTPS' ? [HTTP_ROUTE_KIND] : [];
        ls.conditions = [
          condition('Accepted', problem.accepted, problem.reason, problem.message, gen),
          condition(
            'ResolvedRefs',
            problem.resolved,
            problem.resolved ? 'ResolvedRefs' : problem.reason,
            problem.message,
            gen,
          ),
          condition('Programmed', false, 'Invalid', problem.message, gen),
          condition(
            'Conflicted',
            problem.conflicted,
            problem.conflicted ? problem.reason : 'NoConflicts',
            problem.message,
            gen,
          ),
        ];
        continue;
      }
      const group = portGroup(
        ports,
        (address as { address: string }).address,
        localPort,
        l.protocol === 'HTTPS' ? 'https' : 'http',
        settings,
      );
      if (group.protocol !== (l.protocol === 'HTTPS' ? 'https' : 'http')) {
        ls.conditions = [
          condition(
            'Accepted',
            false,
            'UnsupportedProtocol',
            `port ${localPort} already serves ${group.protocol}`,
            gen,
          ),
          condition('ResolvedRefs', true, 'ResolvedRefs', 'references resolved', gen),
          condition('Programmed', false, 'Invalid', `port ${localPort} already serves ${group.protocol}`, gen),
          condition('Conflicted', true, 'ProtocolConflict', `port ${localPort} already serves ${group.protocol}`, gen),
        ];
        continue;
      }
      if (l.protocol === 'HTTPS') {
        const ref = l.tls!.certificateRefs![0];
        const ns = ref.namespace ?? gw.metadata.namespace ?? 'default';
        const secret = secrets.get(key(ns, ref.name))!;
        const id = { namespace: ns, name: ref.name };
        certificates.set(key(ns, ref.name), {
          ...id,
          cert: decode(secret.data!['tls.crt']),
          key: decode(secret.data!['tls.key']),
        });
        group.certificates.push({
          hostname: l.hostname,
          cert: settings.certificateFile(id, 'crt'),
          key: settings.certificateFile(id, 'key'),
        });
      }
      programmed++;
      ls.conditions = [
        condition('Accepted', true, 'Accepted', 'listener accepted', gen),
        condition('ResolvedRefs', true, 'ResolvedRefs', 'references resolved', gen),
        condition('Programmed', true, 'Programmed', `serving on ${group.address}:${localPort}`, gen),
        condition('Conflicted', false, 'NoConflicts', 'no conflicts', gen),
      ];
      attached.push({ gateway: gw, listener: l, status: ls, group });
    }
    const gen = gw.metadata.generation;
    status.gateways.set(gwKey, {
      conditions: [
        condition('Accepted', true, 'Accepted', 'gateway accepted', gen),
        programmed > 0
          ? condition('Programmed', true, 'Programmed', `${programmed} listener(s) programmed`, gen)
          : 'problem' in address
            ? condition('Programmed', false, address.problem.reason, address.problem.message, gen)
            : condition('Programmed', false, 'Invalid', 'no listener could be programmed', gen),
      ],
      listeners: listenerStatuses,
      ...('address' in address ? { address: address.address } : {}),
    });
  }

  const clusters = new Map<string, ConfigInput>();
  const routeEntries: RouteEntry[] = [];
  for (const route of sortByAge(objects.httpRoutes)) {
    const routeNs = route.metadata.namespace ?? 'default';
    const gen = route.metadata.generation;
    const backends = route.spec.rules?.map((rule) => resolveBackends(rule, routeNs, objects, services, clusters)) ?? [];
    const badRef = backends.flatMap((b) => b.problems)[0];
    const resolvedRefs = badRef
      ? condition('ResolvedRefs', false, badRef.reason, badRef.message, gen)
      : condition('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved', gen);
    const invalidRule =
      options.refused?.get(key(routeNs, route.metadata.name)) ??
      route.spec.rules?.map((rule) => ruleProblem(rule)).find(Boolean);
    const parents: RouteParentStatus[] = [];
    for (const ref of route.spec.parentRefs ?? []) {
      if ((ref.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (ref.kind ?? 'Gateway') !== 'Gateway') continue;
      const gwNs = ref.namespace ?? routeNs;
      const gw = gateways.find((g) => g.metadata.name === ref.name && (g.metadata.namespace ?? 'default') === gwNs);
      if (!gw) continue;
      const accepted = attach(route, ref, gw, attached, namespaceLabels);
      const parentRef = {
        group: GATEWAY_GROUP,
        kind: 'Gateway',
        namespace: gwNs,
        name: ref.name,
        ...(ref.sectionName ? { sectionName: ref.sectionName } : {}),
        ...(ref.port ? { port: ref.port } : {}),
      };
      if (invalidRule && accepted.ok) {
        parents.push({
          parentRef,
          controllerName: settings.controllerName,
          conditions: [condition('Accepted', false, 'UnsupportedValue', invalidRule, gen), resolvedRefs],
        });
        continue;
      }
      parents.push({
        parentRef,
        controllerName: settings.controllerName,
        conditions: [
          accepted.ok
            ? condition('Accepted', true, 'Accepted', 'route accepted', gen)
            : condition('Accepted', false, accepted.reason, accepted.message, gen),
          resolvedRefs,
        ],
      });
      if (!accepted.ok) continue;
      for (const { listener: al, hosts } of accepted.listeners) {
        al.status.attachedRoutes++;
        route.spec.rules?.forEach((rule, ruleIndex) => {
          for (const entry of ruleRoutes(route, rule, ruleIndex, backends[ruleIndex], hosts))
            routeEntries.push({
              ...entry,
              action: withRedirectPort(entry.action, al.listener),
              owner: key(routeNs, route.metadata.name),
              group: al.group,
            });
        });
      }
    }
    if (parents.length) status.httpRoutes.set(key(routeNs, route.metadata.name), parents);
  }

  // One Meridian route per (entry, port group); an entry reached through two listeners of one port merges hosts.
  const byName = new Map<string, RouteEntry>();
  for (const e of routeEntries) {
    const name = configName([...e.nameParts, e.group.id]);
    const prev = byName.get(name);
    if (prev) prev.hosts = prev.hosts && e.hosts ? [...new Set([...prev.hosts, ...e.hosts])] : undefined;
    else byName.set(name, { ...e, name });
  }
  const entries = [...byName.values()].sort(comparePrecedence);
  for (const e of entries) e.group.routes.push(e.name!);
  const routes = entries.map((e) => ({
    name: e.name!,
    match: { ...e.match, ...(e.hosts ? { hosts: e.hosts } : {}) },
    ...e.action,
  }));

  const listeners = [...ports.values()]
    .sort((a, b) => a.address.localeCompare(b.address) || a.port - b.port)
    .map((g) => listenerConfig(g, settings));
  const routeOwners = new Map(entries.map((e) => [e.name!, e.owner]));
  return {
    listeners,
    routes,
    clusters: [...clusters.values()],
    certificates: [...certificates.values()],
    status,
    routeOwners,
  };
}

/** One Meridian listener: the Gateway listeners on one address and port. */
interface PortGroup {
  /** `p<port>`, with the address when it is not `address` (the part of route names that says where). */
  id: string;
  port: number;
  protocol: 'http' | 'https';
  address: string;
  certificates: Array<{ hostname?: string; cert: string; key: string }>;
  routes: string[];
}

interface AttachedListener {
  gateway: Gateway;
  listener: GatewayListener;
  status: ListenerStatus;
  group: PortGroup;
}

interface RouteEntry {
  nameParts: string[];
  owner: string;
  name?: string;
  group: PortGroup;
  hosts: string[] | undefined;
  match: Record<string, unknown>;
  action: Record<string, unknown>;
  /** Sort keys, Gateway API precedence. */
  rank: {
    exact: number;
    method: number;
    headers: number;
    query: number;
    age: string;
    route: string;
    rule: number;
    match: number;
  };
}

function portGroup(
  ports: Map<string, PortGroup>,
  address: string,
  port: number,
  protocol: 'http' | 'https',
  settings: GatewayApiSettings,
): PortGroup {
  let g = ports.get(`${address} ${port}`);
  if (!g) {
    const at = address === settings.address ? '' : `-${address.replace(/[^A-Za-z0-9]/g, '-')}`;
    ports.set(
      `${address} ${port}`,
      (g = { id: `p${port}${at}`, port, protocol, address, certificates: [], routes: [] }),
    );
  }
  return g;
}

function listenerConfig(g: PortGroup, settings: GatewayApiSettings): ConfigInput {
  const at = g.address === settings.address ? [] : [g.address.replace(/[^A-Za-z0-9]/g, '-')];
  const base = {
    name: configName([...at, 'port', String(g.port)]),
    address: formatAddress(g.address, g.port),
    protocol: g.protocol,
    routes: g.routes,
  };
  if (g.protocol === 'http') return base;
  // The listener without a hostname (or else the first) is the default certificate; the others are served by SNI.
  const fallback = g.certificates.find((c) => !c.hostname) ?? g.certificates[0];
  const sni = g.certificates
    .filter((c) => c.hostname && c !== fallback)
    .map((c) => ({ serverNames: [c.hostname!], cert: c.cert, key: c.key }));
  return { ...base, tls: { cert: fallback.cert, key: fallback.key, ...(sni.length ? { certificates: sni } : {}) } };
}

/**
 * The address each of our Gateways (oldest first) opens its listeners on, by "namespace/name". Without
 * an `addresses` pool, `address` for all. With a pool each Gateway gets one of its own: the one it asks
 * for (spec.addresses, type IPAddress) when the pool has it; else the one its status shows (so an
 * assignment survives restarts and other Gateways coming and going); else the first free one. An address
 * asked for outside the pool, or none free: the Gateway is not programmed (AddressNotUsable /
 * AddressNotAssigned, the spec's reasons).
 */
function assignAddresses(
  gateways: Gateway[],
  settings: GatewayApiSettings,
): Map<string, { address: string } | { problem: { reason: string; message: string } }> {
  const out = new Map<string, { address: string } | { problem: { reason: string; message: string } }>();
  const pool = settings.addresses;
  const taken = new Set<string>();
  const pending: Gateway[] = [];
  for (const gw of gateways) {
    const gwKey = key(gw.metadata.namespace, gw.metadata.name);
    const asked = gw.spec.addresses?.[0];
    if (asked) {
      const usable =
        (asked.type ?? 'IPAddress') === 'IPAddress' &&
        (pool ? pool.includes(asked.value) : asked.value === settings.address);
      out.set(
        gwKey,
        usable
          ? { address: asked.value }
          : {
              problem: {
                reason: 'AddressNotUsable',
                message: `${asked.type ?? 'IPAddress'} ${asked.value} is not one this gateway can open (gateway.gatewayApi.${pool ? 'addresses' : 'address'})`,
              },
            },
      );
      if (usable) taken.add(asked.value);
    } else if (!pool) out.set(gwKey, { address: settings.address });
    else pending.push(gw);
  }
  const later: Gateway[] = [];
  for (const gw of pending) {
    const had = gw.status?.addresses?.[0]?.value;
    if (had && pool!.includes(had) && !taken.has(had)) {
      taken.add(had);
      out.set(key(gw.metadata.namespace, gw.metadata.name), { address: had });
    } else later.push(gw);
  }
  for (const gw of later) {
    const free = pool!.find((a) => !taken.has(a));
    if (free) taken.add(free);
    out.set(
      key(gw.metadata.namespace, gw.metadata.name),
      free
        ? { address: free }
        : {
            problem: {
              reason: 'AddressNotAssigned',
              message: `every address of gateway.gatewayApi.addresses is in use (${pool!.length})`,
            },
          },
    );
  }
  return out;
}

/** Why a Gateway listener cannot be programmed (protocol, TLS mode, certificate, duplicate), if so. */
function listenerProblem(
  l: GatewayListener,
  gw: Gateway,
  secrets: Map<string, { type?: string; data?: Record<string, string> }>,
  seen: Map<string, string>,
): { accepted: boolean; resolved: boolean; conflicted: boolean; reason: string; message: string } | undefined {
  if (l.protocol !== 'HTTP' && l.protocol !== 'HTTPS')
    return {
      accepted: false,
      resolved: true,
      conflicted: false,
      reason: 'UnsupportedProtocol',
      message: `protocol ${l.protocol} is not supported (HTTP, HTTPS)`,
    };
  const slot = `${l.port}/${l.hostname ?? '*'}`;
  if (seen.has(slot))
    return {
      accepted: true,
      resolved: true,
      conflicted: true,
      reason: 'HostnameConflict',
      message: `listener ${seen.get(slot)} has the same port and hostname`,
    };
  seen.set(slot, l.name);
  if (l.protocol === 'HTTPS') {
    if ((l.tls?.mode ?? 'Terminate') !== 'Terminate')
      return {
        accepted: false,
        resolved: true,
        conflicted: false,
        reason: 'UnsupportedValue',
        message: 'only tls.mode Terminate is supported on HTTPS listeners',
      };
    const ref = l.tls?.certificateRefs?.[0];
    if (!ref)
      return {
        accepted: false,
        resolved: false,
        conflicted: false,
        reason: 'InvalidCertificateRef',
        message: 'an HTTPS listener needs tls.certificateRefs',
      };
    if ((ref.group ?? '') !== '' || (ref.kind ?? 'Secret') !== 'Secret')
      return {
        accepted: true,
        resolved: false,
        conflicted: false,
        reason: 'InvalidCertificateRef',
        message: `certificateRefs kind ${ref.kind} is not supported (Secret)`,
      };
    const ns = ref.namespace ?? gw.metadata.namespace ?? 'default';
    if (ns !== (gw.metadata.namespace ?? 'default'))
      return {
        accepted: true,
        resolved: false,
        conflicted: false,
        reason: 'RefNotPermitted',
        message: `Secret ${ns}/${ref.name} is in another namespace`,
      };
    const secret = secrets.get(key(ns, ref.name));
    if (secret?.type !== 'kubernetes.io/tls' || !secret.data?.['tls.crt'] || !secret.data?.['tls.key']) {
      return {
        accepted: true,
        resolved: false,
        conflicted: false,
        reason: 'InvalidCertificateRef',
        message: `Secret ${ns}/${ref.name} is not a kubernetes.io/tls Secret with tls.crt and tls.key`,
      };
    }
  }
  return undefined;
}

type Attachment =
  | { ok: true; listeners: Array<{ listener: AttachedListener; hosts: string[] | undefined }> }
  | { ok: false; reason: string; message: string };

/** Which of a Gateway's programmed listeners a route attaches to through one parentRef, with the hosts it serves there. */
function attach(
  route: HTTPRoute,
  ref: ParentReference,
  gw: Gateway,
  attached: AttachedListener[],
  namespaceLabels: Map<string, Record<string, string>>,
): Attachment {
  const candidates = attached.filter(
    (a) =>
      a.gateway === gw &&
      (!ref.sectionName || a.listener.name === ref.sectionName) &&
      (!ref.port || a.listener.port === ref.port),
  );
  if (!candidates.length) {
    const named = gw.spec.listeners.some(
      (l) => (!ref.sectionName || l.name === ref.sectionName) && (!ref.port || l.port === ref.port),
    );
    return {
      ok: false,
      reason: 'NoMatchingParent',
      message: named
        ? 'the selected listener is not programmed'
        : `no listener matches sectionName ${ref.sectionName ?? '(any)'} port ${ref.port ?? '(any)'}`,
    };
  }
  const routeNs = route.metadata.namespace ?? 'default';
  const allowed = candidates.filter((a) => allowsNamespace(a, routeNs, namespaceLabels) && allowsKind(a.listener));
  if (!allowed.length)
    return {
      ok: false,
      reason: 'NotAllowedByListeners',
      message: `no selected listener allows HTTPRoutes from namespace ${routeNs}`,
    };
  const listeners = allowed
    .map((a) => ({ listener: a, hosts: intersectHostnames(route.spec.hostnames, a.listener.hostname) }))
    .filter((x) => x.hosts !== null) as Array<{ listener: AttachedListener; hosts: string[] | undefined }>;
  if (!listeners.length)
    return {
      ok: false,
      reason: 'NoMatchingListenerHostname',
      message: 'no hostname of the route matches a selected listener',
    };
  return { ok: true, listeners };
}

function allowsNamespace(
  a: AttachedListener,
  routeNs: string,
  namespaceLabels: Map<string, Record<string, string>>,
): boolean {
  const from = a.listener.allowedRoutes?.namespaces?.from ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Same') return routeNs === (a.gateway.metadata.namespace ?? 'default');
  const want = a.listener.allowedRoutes?.namespaces?.selector?.matchLabels ?? {};
  const labels = namespaceLabels.get(routeNs) ?? {};
  return Object.entries(want).every(([k, v]) => labels[k] === v);
}

function allowsKind(l: GatewayListener): boolean {
  const kinds = l.allowedRoutes?.kinds;
  return !kinds?.length || kinds.some((k) => k.kind === 'HTTPRoute' && (k.group ?? GATEWAY_GROUP) === GATEWAY_GROUP);
}

/**
 * The hostnames a route serves on a listener: undefined = any host, null = none in common. Exact names
 * match themselves; `*.example.com` matches any name below example.com (not example.com itself). Of a
 * wildcard and a name it covers, the more specific one is kept.
 */
export function intersectHostnames(
  routeHosts: string[] | undefined,
  listenerHost: string | undefined,
): string[] | undefined | null {
  if (!listenerHost) return routeHosts?.length ? [...routeHosts] : undefined;
  if (!routeHosts?.length) return [listenerHost];
  const out = new Set<string>();
  for (const h of routeHosts) {
    if (h === listenerHost) out.add(h);
    else if (covers(listenerHost, h)) out.add(h);
    else if (covers(h, listenerHost)) out.add(listenerHost);
  }
  return out.size ? [...out] : null;
}

/** Does wildcard `pattern` (`*.example.com`) cover `name` (a name or a narrower wildcard)? */
function covers(pattern: string, name: string): boolean {
  if (!pattern.startsWith('*.')) return false;
  const suffix = pattern.slice(1);
  return name.length > suffix.length && name.endsWith(suffix) && name !== pattern;
}

interface ResolvedBackends {
  /** The rule's action: a cluster, a weighted split, or a 500 when nothing usable is left. */
  action: Record<string, unknown>;
  problems: Array<{ reason: string; message: string }>;
}

/** backendRefs (and a RequestMirror's) -> clusters (made once per Service port), or why a reference cannot be used. */
function resolveBackends(
  rule: HTTPRouteRule,
  routeNs: string,
  objects: GatewayApiObjects,
  services: Map<string, Service>,
  clusters: Map<string, ConfigInput>,
): ResolvedBackends {
  const problems: ResolvedBackends['problems'] = [];
  const usable: Array<{ cluster: string; weight: number }> = [];
  for (const ref of rule.backendRefs ?? []) {
    const problem = backendProblem(ref, routeNs, objects, services);
    if (problem) problems.push(problem);
    else usable.push({ cluster: clusterFor(ref, routeNs, services, clusters), weight: ref.weight ?? 1 });
  }
  const mirror = mirrorOf(rule, routeNs, objects, services, clusters, problems);
  const weighted = usable.filter((u) => u.weight > 0);
  if (!weighted.length) return { action: { directResponse: { status: 500, body: '' } }, problems };
  const target = weighted.length === 1 ? { cluster: weighted[0].cluster } : { weightedClusters: weighted };
  return { action: { ...target, ...(mirror ? { mirror } : {}) }, problems };
}

/** The cluster of a resolvable Service reference: its pods, by the Service port's name (or target port number). */
function clusterFor(
  ref: HTTPBackendRef,
  routeNs: string,
  services: Map<string, Service>,
  clusters: Map<string, ConfigInput>,
): string {
  const ns = ref.namespace ?? routeNs;
  const svc = services.get(key(ns, ref.name))!;
  const port = svc.spec.ports!.find((p) => p.port === ref.port)!;
  // An EndpointSlice names its ports after the Service's ports; an unnamed (single) port is matched by its target port number.
  const slicePort = port.name ? port.name : typeof port.targetPort === 'number' ? port.targetPort : port.port;
  const name = configName(['svc', ns, ref.name, String(ref.port)]);
  if (!clusters.has(name))
    clusters.set(name, { name, discovery: { kubernetes: { namespace: ns, service: ref.name, port: slicePort } } });
  return name;
}

/** A RequestMirror filter's copy target (Meridian's `mirror`), its reference checked like a backendRef. */
function mirrorOf(
  rule: HTTPRouteRule,
  routeNs: string,
  objects: GatewayApiObjects,
  services: Map<string, Service>,
  clusters: Map<string, ConfigInput>,
  problems: ResolvedBackends['problems'],
): { cluster: string; percent: number } | undefined {
  const f = rule.filters?.find((x) => x.type === 'RequestMirror');
  if (!f) return undefined;
  const m = (f.requestMirror ?? {}) as {
    backendRef?: HTTPBackendRef;
    percent?: number;
    fraction?: { numerator: number; denominator?: number };
  };
  if (!m.backendRef) return undefined;
  const problem = backendProblem(m.backendRef, routeNs, objects, services);
  if (problem) {
    problems.push(problem);
    return undefined;
  }
  const percent = m.percent ?? (m.fraction ? (100 * m.fraction.numerator) / (m.fraction.denominator ?? 100) : 100);
  return { cluster: clusterFor(m.backendRef, routeNs, services, clusters), percent };
}

function backendProblem(
  ref: HTTPBackendRef,
  routeNs: string,
  objects: GatewayApiObjects,
  services: Map<string, Service>,
): { reason: string; message: string } | undefined {
  if ((ref.group ?? '') !== '' || (ref.kind ?? 'Service') !== 'Service')
    return {
      reason: 'InvalidKind',
      message: `backendRef kind ${ref.group ?? ''}/${ref.kind} is not supported (core Service)`,
    };
  const ns = ref.namespace ?? routeNs;
  if (ns !== routeNs && !referenceGranted(objects, routeNs, ns, ref.name))
    return {
      reason: 'RefNotPermitted',
      message: `no ReferenceGrant in ${ns} allows HTTPRoutes from ${routeNs} to Service ${ref.name}`,
    };
  const svc = services.get(key(ns, ref.name));
  if (!svc) return { reason: 'BackendNotFound', message: `Service ${ns}/${ref.name} not found` };
  if (ref.port === undefined)
    return { reason: 'UnsupportedValue', message: `backendRef to Service ${ns}/${ref.name} needs a port` };
  if (!svc.spec.ports?.some((p) => p.port === ref.port))
    return { reason: 'BackendNotFound', message: `Service ${ns}/${ref.name} has no port ${ref.port}` };
  if (svc.spec.type === 'ExternalName')
    return { reason: 'UnsupportedValue', message: `Service ${ns}/${ref.name} is ExternalName (no EndpointSlices)` };
  return undefined;
}

/** A ReferenceGrant in `toNs` that lets HTTPRoutes of `fromNs` refer to Service `name`. */
function referenceGranted(objects: GatewayApiObjects, fromNs: string, toNs: string, name: string): boolean {
  return objects.referenceGrants.some(
    (g) =>
      (g.metadata.namespace ?? 'default') === toNs &&
      g.spec.from.some((f) => f.group === GATEWAY_GROUP && f.kind === 'HTTPRoute' && f.namespace === fromNs) &&
      g.spec.to.some((t) => t.group === '' && t.kind === 'Service' && (!t.name || t.name === name)),
  );
}

const SUPPORTED_FILTERS = new Set([
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestRedirect',
  'URLRewrite',
  'RequestMirror',
]);
/**
 * Filters on backendRefs: header modifiers, when every backendRef of the rule has the same ones (then
 * "sent to this backend" is "sent by this rule", and they apply after the rule's own). Different filters
 * per backend of a weighted split would need per-split header ops in the data plane: refused.
 */
const BACKEND_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier']);

/** Why a rule cannot be programmed (an unsupported or conflicting filter), if so. */
function ruleProblem(rule: HTTPRouteRule): string | undefined {
  const filters = rule.filters ?? [];
  const types = filters.map((f) => f.type);
  const unsupported = types.find((t) => !SUPPORTED_FILTERS.has(t));
  if (unsupported) return `filter ${unsupported} is not supported`;
  for (const t of SUPPORTED_FILTERS)
    if (types.filter((x) => x === t).length > 1) return `filter ${t} appears more than once in a rule`;
  if (types.includes('RequestRedirect') && rule.backendRefs?.length)
    return 'a rule with RequestRedirect cannot have backendRefs';
  if (types.includes('RequestRedirect') && types.includes('URLRewrite'))
    return 'RequestRedirect and URLRewrite cannot be in one rule';
  const redirect = filters.find((f) => f.type === 'RequestRedirect')?.requestRedirect as
    | { port?: number; path?: { type: string } }
    | undefined;
  if (
    redirect?.path?.type === 'ReplacePrefixMatch' &&
    (rule.matches ?? [{}]).some((m) => (m.path?.type ?? 'PathPrefix') !== 'PathPrefix')
  )
    return 'RequestRedirect ReplacePrefixMatch needs PathPrefix matches';
  const rewrite = filters.find((f) => f.type === 'URLRewrite')?.urlRewrite as { path?: { type: string } } | undefined;
  if (
    rewrite?.path?.type === 'ReplacePrefixMatch' &&
    (rule.matches ?? [{}]).some((m) => (m.path?.type ?? 'PathPrefix') !== 'PathPrefix')
  )
    return 'URLRewrite ReplacePrefixMatch needs PathPrefix matches';
  const backendFilters = (rule.backendRefs ?? []).map((b) => b.filters ?? []);
  const other = backendFilters.flat().find((f) => !BACKEND_FILTERS.has(f.type));
  if (other) return `filter ${other.type} on a backendRef is not supported (${[...BACKEND_FILTERS].join(', ')})`;
  if (backendFilters.some((f) => JSON.stringify(f) !== JSON.stringify(backendFilters[0])))
    return 'backendRefs of one rule with different filters are not supported';
  for (const t of BACKEND_FILTERS)
    if ((backendFilters[0] ?? []).filter((f) => f.type === t).length > 1)
      return `filter ${t} appears more than once on a backendRef`;
  return undefined;
}

/** The Meridian routes of one rule: one per match (two for a PathPrefix that is not "/"). */
function ruleRoutes(
  route: HTTPRoute,
  rule: HTTPRouteRule,
  ruleIndex: number,
  backends: ResolvedBackends,
  hosts: string[] | undefined,
): Array<Omit<RouteEntry, 'group' | 'owner'>> {
  const ns = route.metadata.namespace ?? 'default';
  const matches = rule.matches?.length ? rule.matches : [{}];
  const filtersAction = filterAction(rule);
  const action = filtersAction.redirect ? filtersAction : { ...backends.action, ...filtersAction };
  const out: Array<Omit<RouteEntry, 'group' | 'owner'>> = [];
  matches.forEach((m, matchIndex) => {
    const rank = {
      exact: 0,
      method: m.method ? 1 : 0,
      headers: m.headers?.length ?? 0,
      query: m.queryParams?.length ?? 0,
      age: route.metadata.creationTimestamp ?? '',
      route: `${ns}/${route.metadata.name}`,
      rule: ruleIndex,
      match: matchIndex,
    };
    const predicates = matchPredicates(m);
    const parts = [ns, route.metadata.name, `r${ruleIndex}`, `m${matchIndex}`];
    for (const [suffix, path, exactRank] of pathVariants(m)) {
      const rewrite = urlRewrite(rule, path);
      const redirectPrefix = action.redirect ? redirectPathPrefix(rule, path) : undefined;
      const shaped =
        redirectPrefix !== undefined
          ? { ...action, redirect: { ...(action.redirect as object), pathPrefix: redirectPrefix } }
          : rewrite
            ? { ...action, rewrite }
            : action;
      out.push({
        nameParts: suffix ? [...parts, suffix] : parts,
        hosts,
        match: { path, ...predicates },
        action: shaped,
        rank: { ...rank, exact: exactRank },
      });
    }
  });
  return out;
}

/**
 * Meridian path matches for one Gateway API path match. PathPrefix matches whole path elements
 * (`/foo` matches /foo and /foo/bar, not /foobar; a trailing slash is ignored), which a plain string
 * prefix does not: `/foo` becomes an exact `/foo` and a prefix `/foo/`. The third value ranks a real
 * Exact match above the exact half of a prefix.
 */
function pathVariants(m: HTTPRouteMatch): Array<[string, Record<string, string>, number]> {
  const type = m.path?.type ?? 'PathPrefix';
  const value = m.path?.value ?? '/';
  if (type === 'Exact') return [['', { exact: value }, 2]];
  if (type === 'RegularExpression') return [['', { regex: value }, 0]];
  const trimmed = value.replace(/\/+$/, '');
  if (trimmed === '') return [['', { prefix: '/' }, 0]];
  return [
    ['x', { exact: trimmed }, 1],
    ['', { prefix: `${trimmed}/` }, 0],
  ];
}

function matchPredicates(m: HTTPRouteMatch): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (m.method) out.methods = [m.method];
  if (m.headers?.length)
    out.headers = m.headers.map((h) =>
      h.type === 'RegularExpression' ? { name: h.name, regex: h.value } : { name: h.name, exact: h.value },
    );
  if (m.queryParams?.length)
    out.query = m.queryParams.map((q) =>
      q.type === 'RegularExpression' ? { name: q.name, regex: q.value } : { name: q.name, exact: q.value },
    );
  return out;
}

type HeaderFilter = {
  set?: Array<{ name: string; value: string }>;
  add?: Array<{ name: string; value: string }>;
  remove?: string[];
};

/** Supported filters as Meridian route fields. */
function filterAction(rule: HTTPRouteRule): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of rule.filters ?? []) {
    if (f.type === 'RequestHeaderModifier') out.requestHeaders = headerOps(f.requestHeaderModifier as HeaderFilter);
    else if (f.type === 'ResponseHeaderModifier')
      out.responseHeaders = headerOps(f.responseHeaderModifier as HeaderFilter);
    else if (f.type === 'RequestRedirect') {
      const r = (f.requestRedirect ?? {}) as {
        scheme?: string;
        hostname?: string;
        port?: number;
        statusCode?: number;
        path?: { type: string; replaceFullPath?: string };
      };
      out.redirect = {
        ...(r.scheme ? { scheme: r.scheme } : {}),
        ...(r.port !== undefined ? { port: r.port } : {}),
        ...(r.hostname ? { host: r.hostname } : {}),
        ...(r.path?.type === 'ReplaceFullPath' && r.path.replaceFullPath !== undefined
          ? { path: r.path.replaceFullPath }
          : {}),
        status: r.statusCode ?? 302,
      };
    }
  }
  // The backendRefs' header modifiers (all alike, ruleProblem says) apply after the rule's.
  for (const f of rule.backendRefs?.[0]?.filters ?? []) {
    if (f.type === 'RequestHeaderModifier')
      out.requestHeaders = thenApply(
        out.requestHeaders as HeaderOpsInput | undefined,
        headerOps(f.requestHeaderModifier as HeaderFilter),
      );
    else if (f.type === 'ResponseHeaderModifier')
      out.responseHeaders = thenApply(
        out.responseHeaders as HeaderOpsInput | undefined,
        headerOps(f.responseHeaderModifier as HeaderFilter),
      );
  }
  return out;
}

type HeaderOpsInput = { set?: Record<string, string>; add?: Record<string, string>; remove?: string[] };

/**
 * One set of header ops with the effect of `first` then `second` (Meridian applies one set: remove and
 * set replace what came in, add appends). A header `second` sets or removes ignores what `first` did to
 * it; one both add keeps both values, comma-joined (one header line with both, as HTTP allows).
 */
function thenApply(first: HeaderOpsInput | undefined, second: HeaderOpsInput): HeaderOpsInput {
  if (!first) return second;
  const lower = (r: Record<string, string> | undefined) =>
    new Map(Object.entries(r ?? {}).map(([k, v]) => [k.toLowerCase(), [k, v] as const]));
  const overridden = new Set([...Object.keys(second.set ?? {}), ...(second.remove ?? [])].map((k) => k.toLowerCase()));
  const set = new Map([...[...lower(first.set)].filter(([k]) => !overridden.has(k)), ...lower(second.set)]);
  const add = new Map([...lower(first.add)].filter(([k]) => !overridden.has(k)));
  for (const [k, [name, v]] of lower(second.add))
    add.set(k, add.has(k) ? [add.get(k)![0], `${add.get(k)![1]},${v}`] : [name, v]);
  const remove = [...new Set([...(first.remove ?? []), ...(second.remove ?? [])].map((k) => k.toLowerCase()))];
  const out: HeaderOpsInput = {};
  if (set.size) out.set = Object.fromEntries(set.values());
  if (add.size) out.add = Object.fromEntries(add.values());
  if (remove.length) out.remove = remove;
  return out;
}

/** A RequestRedirect's ReplacePrefixMatch as `redirect.pathPrefix` for one of the rule's path matches (as urlRewrite does). */
function redirectPathPrefix(rule: HTTPRouteRule, path: Record<string, string>): string | undefined {
  const r = rule.filters?.find((x) => x.type === 'RequestRedirect')?.requestRedirect as
    | { path?: { type: string; replacePrefixMatch?: string } }
    | undefined;
  if (r?.path?.type !== 'ReplacePrefixMatch' || r.path.replacePrefixMatch === undefined) return undefined;
  return prefixReplacement(r.path.replacePrefixMatch, path);
}

/** The replacement for what a match matched: the exact half of a PathPrefix is its whole path; the prefix half ends in "/", so the replacement does too. */
function prefixReplacement(value: string, path: Record<string, string>): string {
  const replacement = value.replace(/\/+$/, '');
  return path.exact !== undefined ? replacement || '/' : `${replacement}/`;
}

/**
 * A URLRewrite filter as Meridian's `rewrite` for one of the rule's path matches: `hostname` -> host;
 * ReplaceFullPath -> path; ReplacePrefixMatch -> pathPrefix, replacing what the match matched (the
 * exact half of a PathPrefix is its whole path; the prefix half ends in "/", so the replacement does too).
 */
function urlRewrite(rule: HTTPRouteRule, path: Record<string, string>): Record<string, string> | undefined {
  const f = rule.filters?.find((x) => x.type === 'URLRewrite');
  if (!f) return undefined;
  const r = (f.urlRewrite ?? {}) as {
    hostname?: string;
    path?: { type: string; replaceFullPath?: string; replacePrefixMatch?: string };
  };
  const out: Record<string, string> = {};
  if (r.hostname) out.host = r.hostname;
  if (r.path?.type === 'ReplaceFullPath' && r.path.replaceFullPath !== undefined) out.path = r.path.replaceFullPath;
  if (r.path?.type === 'ReplacePrefixMatch' && r.path.replacePrefixMatch !== undefined) {
    out.pathPrefix = prefixReplacement(r.path.replacePrefixMatch, path);
  }
  return out;
}

/**
 * A redirect's Location port as the Gateway API derives it: the filter's `port`; else the default port
 * of the filter's scheme; else the port of the Gateway listener the request came in on (not the local
 * port it is mapped to). Meridian leaves a scheme's default port out of the Location.
 */
function withRedirectPort(action: Record<string, unknown>, listener: GatewayListener): Record<string, unknown> {
  const redirect = action.redirect as { scheme?: string; port?: number } | undefined;
  if (!redirect || redirect.port !== undefined) return action;
  const port = redirect.scheme ? (redirect.scheme === 'https' ? 443 : 80) : listener.port;
  return { ...action, redirect: { ...redirect, port } };
}

function headerOps(f: HeaderFilter | undefined): Record<string, unknown> {
  const ops: Record<string, unknown> = {};
  if (f?.set?.length) ops.set = Object.fromEntries(f.set.map((h) => [h.name, h.value]));
  if (f?.add?.length) ops.add = Object.fromEntries(f.add.map((h) => [h.name, h.value]));
  if (f?.remove?.length) ops.remove = [...f.remove];
  return ops;
}

/** Gateway API precedence among routes of equal host and path rank (see translate). */
function comparePrecedence(a: RouteEntry, b: RouteEntry): number {
  const x = a.rank,
    y = b.rank;
  return (
    y.exact - x.exact ||
    y.method - x.method ||
    y.headers - x.headers ||
    y.query - x.query ||
    (x.age < y.age ? -1 : x.age > y.age ? 1 : 0) ||
    (x.route < y.route ? -1 : x.route > y.route ? 1 : 0) ||
    x.rule - y.rule ||
    x.match - y.match ||
    (a.name! < b.name! ? -1 : 1)
  );
}

function sortByAge<T extends { metadata: { creationTimestamp?: string; namespace?: string; name: string } }>(
  items: T[],
): T[] {
  return [...items].sort((a, b) => {
    const ta = a.metadata.creationTimestamp ?? '',
      tb = b.metadata.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = key(a.metadata.namespace, a.metadata.name),
      kb = key(b.metadata.namespace, b.metadata.name);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

function condition(
  type: string,
  ok: boolean,
  reason: string,
  message: string,
  observedGeneration: number | undefined,
): Condition {
  return {
    type,
    status: ok ? 'True' : 'False',
    reason,
    message,
    ...(observedGeneration !== undefined ? { observedGeneration } : {}),
  };
}

function key(namespace: string | undefined, name: string): string {
  return `${namespace ?? 'default'}/${name}`;
}

function decode(base64: string): string {
  return Buffer.from(base64, 'base64').toString('utf8');
}

/**
 * A Meridian name from parts: `gwapi.` + the parts joined by dots (Kubernetes names are DNS labels, valid
 * in Meridian names). Over 128 characters, the tail is replaced by a hash so names stay unique.
 */
export function configName(parts: string[]): string {
  const name = GATEWAY_API_PREFIX + parts.join('.');
  if (name.length <= 128) return name;
  return `${name.slice(0, 110)}.${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

/**
 * The status checks of the Gateway API conformance suite (conformance/utils/kubernetes/helpers.go), as
 * transcribed in ../shared/conformance/gateway-api (README, "Status checks"): each reads the objects the
 * gateway wrote status on and says why it does not hold yet, or undefined when it holds. The runner polls
 * them as Go does (100 ms), so a check that never holds fails the case with its last reason.
 */

export interface ConditionWant {
  type: string;
  status: string;
  /** null: any reason. */
  reason: string | null;
}

interface Ref {
  namespace: string;
  name: string;
}

interface ParentWant {
  parentRef: { group: string; kind: string; namespace?: string; name: string };
  controllerName: string;
  conditions: ConditionWant[];
}

export interface StatusCheck {
  check: string;
  phase?: number;
  gateway?: Ref;
  parentGateway?: Ref;
  route?: Ref;
  routes?: Ref[];
  listeners?:
    | Array<{
        name: string;
        supportedKinds: Array<{ group: string; kind: string }>;
        conditions: ConditionWant[];
        attachedRoutes: number;
      }>
    | string[]
    | null;
  namespaces?: string[];
  namespaceRequired?: boolean;
  parents?: ParentWant[];
  condition?: ConditionWant;
  expect?: unknown;
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  observedGeneration?: number;
}

interface StatusObject {
  metadata: { name: string; namespace?: string; generation?: number };
  status?: {
    conditions?: Condition[];
    addresses?: Array<{ type?: string; value: string }>;
    listeners?: Array<{
      name: string;
      supportedKinds?: Array<{ group?: string; kind: string }>;
      attachedRoutes: number;
      conditions?: Condition[];
    }>;
    parents?: Array<{
      parentRef: { group?: string; kind?: string; namespace?: string; name: string; sectionName?: string };
      controllerName: string;
      conditions?: Condition[];
    }>;
  };
}

/** What a check reads: one object by kind, or every Gateway of a namespace. */
export interface StatusReader {
  gateway(ns: string, name: string): StatusObject | undefined;
  route(ns: string, name: string): StatusObject | undefined;
  gatewaysIn(ns: string): StatusObject[];
  /** Memory between polls of one check (HTTPRouteMustHaveNoAcceptedParents, GenerationChanged). */
  memo: Map<string, unknown>;
}

function has(conditions: Condition[] | undefined, want: ConditionWant): boolean {
  return (conditions ?? []).some(
    (c) => c.type === want.type && c.status === want.status && (want.reason === null || c.reason === want.reason),
  );
}

function missing(conditions: Condition[] | undefined, wants: ConditionWant[]): ConditionWant | undefined {
  return wants.find((w) => !has(conditions, w));
}

const show = (w: ConditionWant) => `${w.type}=${w.status}${w.reason ? `/${w.reason}` : ''}`;

/** Go's ConditionsHaveLatestObservedGeneration. */
function stale(o: StatusObject, conditions: Condition[] | undefined): string | undefined {
  const old = (conditions ?? []).find((c) => c.observedGeneration !== o.metadata.generation);
  return old
    ? `${o.metadata.name}: condition ${old.type} observedGeneration ${old.observedGeneration}, generation ${o.metadata.generation}`
    : undefined;
}

/** Why the check does not hold (yet), or undefined. */
export function evaluate(c: StatusCheck, read: StatusReader, controller: string): string | undefined {
  switch (c.check) {
    case 'GatewayAndHTTPRoutesMustBeAccepted': {
      const gw = read.gateway(c.gateway!.namespace, c.gateway!.name);
      if (!gw?.status) return `Gateway ${c.gateway!.name} has no status`;
      const why = stale(gw, gw.status.conditions);
      if (why) return why;
      if (!gw.status.addresses?.some((a) => a.type)) return `Gateway ${c.gateway!.name} has no address with a type`;
      const expect = c.expect as {
        routeParent: { group: string; kind: string; name: string; namespace: string; conditions: ConditionWant[] };
        listenerConditions: ConditionWant[];
      };
      const names = (c.listeners as string[] | null) ?? undefined;
      for (const l of gw.status.listeners ?? []) {
        if (names && !names.includes(l.name)) continue;
        const m = missing(l.conditions, expect.listenerConditions);
        if (m) return `listener ${l.name} lacks ${show(m)}`;
      }
      if (!gw.status.listeners?.length) return `Gateway ${c.gateway!.name} has no listener status`;
      for (const r of c.routes ?? []) {
        const route = read.route(r.namespace, r.name);
        if (!route) return `no HTTPRoute ${r.name}`;
        const p = expect.routeParent;
        // group and kind must be written (Go compares them with DeepEqual); the namespace may be left out in the route's own.
        const parent = route.status?.parents?.find(
          (x) =>
            x.controllerName === controller &&
            x.parentRef.group === p.group &&
            x.parentRef.kind === p.kind &&
            x.parentRef.name === p.name &&
            (x.parentRef.namespace === p.namespace ||
              (x.parentRef.namespace === undefined && r.namespace === p.namespace)),
        );
        if (!parent) return `HTTPRoute ${r.name} has no parent entry for Gateway ${p.name} (group and kind written)`;
        const m = missing(parent.conditions, p.conditions);
        if (m) return `HTTPRoute ${r.name} lacks ${show(m)}`;
        const old = stale(route, parent.conditions);
        if (old) return old;
      }
      return undefined;
    }
    case 'HTTPRouteMustHaveCondition': {
      const route = read.route(c.route!.namespace, c.route!.name);
      const parents = route?.status?.parents ?? [];
      for (const p of parents) {
        const old = stale(route!, p.conditions);
        if (old) return old;
      }
      const ok = parents.some(
        (p) =>
          p.parentRef.name === c.parentGateway!.name &&
          (p.parentRef.namespace === undefined || p.parentRef.namespace === c.parentGateway!.namespace) &&
          has(p.conditions, c.condition!),
      );
      return ok
        ? undefined
        : `HTTPRoute ${c.route!.name} has no parent ${c.parentGateway!.name} with ${show(c.condition!)}`;
    }
    case 'HTTPRouteMustHaveParents': {
      const route = read.route(c.route!.namespace, c.route!.name);
      const actual = route?.status?.parents ?? [];
      if (actual.length !== c.parents!.length)
        return `HTTPRoute ${c.route!.name} has ${actual.length} parents, want ${c.parents!.length}`;
      for (const [i, want] of c.parents!.entries()) {
        const got = actual[i];
        if (got.controllerName !== want.controllerName) return `parent ${i}: controllerName ${got.controllerName}`;
        const ref = got.parentRef;
        if (ref.group !== want.parentRef.group || ref.kind !== want.parentRef.kind || ref.name !== want.parentRef.name)
          return `parent ${i}: parentRef ${JSON.stringify(ref)}`;
        if (
          c.namespaceRequired
            ? ref.namespace !== want.parentRef.namespace
            : ref.namespace !== undefined && ref.namespace !== want.parentRef.namespace
        )
          return `parent ${i}: namespace ${ref.namespace}`;
        const m = missing(got.conditions, want.conditions);
        if (m) return `parent ${i} lacks ${show(m)}`;
        const old = stale(route!, got.conditions);
        if (old) return old;
      }
      return undefined;
    }
    case 'GatewayStatusMustHaveListeners': {
      const gw = read.gateway(c.gateway!.namespace, c.gateway!.name);
      const actual = gw?.status?.listeners ?? [];
      const wants = c.listeners as Array<{
        name: string;
        supportedKinds: Array<{ group: string; kind: string }>;
        conditions: ConditionWant[];
        attachedRoutes: number;
      }>;
      if (actual.length !== wants.length) return `${actual.length} listener statuses, want ${wants.length}`;
      for (const [i, want] of wants.entries()) {
        const got = actual[i];
        if (got.name !== want.name) return `listener ${i} is ${got.name}, want ${want.name}`;
        for (const k of want.supportedKinds)
          if (
            !got.supportedKinds?.some((s) => (s.group ?? 'gateway.networking.k8s.io') === k.group && s.kind === k.kind)
          )
            return `listener ${got.name} does not support ${k.kind}`;
        if (got.attachedRoutes !== want.attachedRoutes)
          return `listener ${got.name}: attachedRoutes ${got.attachedRoutes}, want ${want.attachedRoutes}`;
        const m = missing(got.conditions, want.conditions);
        if (m) return `listener ${got.name} lacks ${show(m)}`;
      }
      return undefined;
    }
    case 'HTTPRouteMustHaveNoAcceptedParents': {
      const route = read.route(c.route!.namespace, c.route!.name);
      if (!route) return `no HTTPRoute ${c.route!.name}`;
      const parents = route.status?.parents ?? [];
      if (parents.length === 0) {
        // Empty on two polls at least a second apart.
        const since = read.memo.get('emptySince') as number | undefined;
        if (since === undefined) read.memo.set('emptySince', Date.now());
        return since !== undefined && Date.now() - since >= 1000
          ? undefined
          : 'parents empty: polling again after a second';
      }
      read.memo.delete('emptySince');
      if (parents.length !== 1) return `${parents.length} parents, want one (or none)`;
      if (!has(parents[0].conditions, { type: 'Accepted', status: 'False', reason: null }))
        return 'the parent is not Accepted=False';
      return stale(route, parents[0].conditions);
    }
    case 'GatewayMustHaveZeroRoutes': {
      const gw = read.gateway(c.gateway!.namespace, c.gateway!.name);
      if (!gw?.status?.conditions?.length) return `Gateway ${c.gateway!.name} has no conditions`;
      const why = stale(gw, gw.status.conditions);
      if (why) return why;
      const listeners = gw.status.listeners ?? [];
      return listeners.length === 0 || (listeners.length === 1 && listeners[0].attachedRoutes === 0)
        ? undefined
        : `listeners ${JSON.stringify(listeners.map((l) => [l.name, l.attachedRoutes]))}`;
    }
    case 'NamespacesMustBeReady': {
      const want = (c.expect as { everyGatewayInNamespace: ConditionWant[] }).everyGatewayInNamespace;
      for (const ns of c.namespaces ?? []) {
        for (const gw of read.gatewaysIn(ns)) {
          const m = missing(gw.status?.conditions, want);
          if (m) return `Gateway ${gw.metadata.name} lacks ${show(m)}`;
          const old = stale(gw, gw.status?.conditions);
          if (old) return old;
        }
      }
      return undefined;
    }
    case 'HTTPRouteMustHaveLatestConditions': {
      const route = read.route(c.route!.namespace, c.route!.name);
      const parents = route?.status?.parents ?? [];
      if (!parents.length) return `HTTPRoute ${c.route!.name} has no parents`;
      for (const p of parents) {
        const old = stale(route!, p.conditions);
        if (old) return old;
      }
      return undefined;
    }
    case 'GenerationChanged': {
      const route = read.route(c.route!.namespace, c.route!.name);
      const before = read.memo.get('generationBefore');
      return route && before !== undefined && route.metadata.generation !== before
        ? undefined
        : `generation ${route?.metadata.generation}, before the patch ${String(before)}`;
    }
    default:
      return `unknown check ${c.check}`;
  }
}

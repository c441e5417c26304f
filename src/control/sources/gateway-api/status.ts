import type { Condition, ParentReference } from './objects.js';
import type { ListenerStatus, RouteParentStatus } from './translate.js';

/**
 * The status subresource bodies the Gateway API source writes, merged with what the object carries:
 * - conditions keep their `lastTransitionTime` while their status stays the same (the API's rule), and
 *   take `now` when it flips or they are new;
 * - an HTTPRoute's `status.parents` entries of other controllers are kept; ours are replaced;
 * - nothing to write (undefined) when the result equals what is there, so a resync writes nothing.
 */

export function mergeConditions(existing: Condition[] | undefined, wanted: Condition[], now: string): Condition[] {
  return wanted.map((c) => {
    const before = existing?.find((e) => e.type === c.type);
    const since = before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : now;
    return { ...c, lastTransitionTime: since };
  });
}

type RouteStatus = { parents?: Array<RouteParentStatus & { conditions: Condition[] }> };

/** The HTTPRoute status to write, or undefined when it is already so. */
export function routeStatus(
  existing: RouteStatus | undefined,
  controllerName: string,
  ours: RouteParentStatus[],
  now: string,
): RouteStatus | undefined {
  const others = (existing?.parents ?? []).filter((p) => p.controllerName !== controllerName);
  const mine = ours.map((p) => {
    const before = existing?.parents?.find(
      (e) => e.controllerName === controllerName && sameParent(e.parentRef, p.parentRef),
    );
    return { ...p, conditions: mergeConditions(before?.conditions, p.conditions, now) };
  });
  const next = { parents: [...others, ...mine] };
  return same(existing ?? {}, next) ? undefined : next;
}

type GatewayStatus = {
  conditions?: Condition[];
  listeners?: Array<ListenerStatus & { conditions: Condition[] }>;
  addresses?: Array<{ type?: string; value: string }>;
};

/** The Gateway status to write (its conditions, listeners and the address listeners open on), or undefined. */
export function gatewayStatus(
  existing: GatewayStatus | undefined,
  wanted: { conditions: Condition[]; listeners: ListenerStatus[]; address?: string },
  now: string,
): GatewayStatus | undefined {
  const address = wanted.address;
  const next: GatewayStatus = {
    addresses: address ? [{ type: /^[0-9.:a-fA-F]+$/.test(address) ? 'IPAddress' : 'Hostname', value: address }] : [],
    conditions: mergeConditions(existing?.conditions, wanted.conditions, now),
    listeners: wanted.listeners.map((l) => ({
      ...l,
      conditions: mergeConditions(existing?.listeners?.find((e) => e.name === l.name)?.conditions, l.conditions, now),
    })),
  };
  return same(existing ?? {}, next) ? undefined : next;
}

/** The GatewayClass status to write, or undefined. */
export function gatewayClassStatus(
  existing: { conditions?: Condition[] } | undefined,
  wanted: Condition[],
  now: string,
): { conditions: Condition[] } | undefined {
  const next = { conditions: mergeConditions(existing?.conditions, wanted, now) };
  return same(existing ?? {}, next) ? undefined : next;
}

function sameParent(a: ParentReference, b: ParentReference): boolean {
  return (
    a.name === b.name &&
    (a.namespace ?? '') === (b.namespace ?? '') &&
    (a.sectionName ?? '') === (b.sectionName ?? '') &&
    (a.port ?? 0) === (b.port ?? 0)
  );
}

/** Deep equality of JSON values, key order aside (the API server may reorder keys). */
function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

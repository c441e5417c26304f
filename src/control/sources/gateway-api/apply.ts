import type { Config } from '../../../config/schema/index.js';
import { ApiError } from '../../api-error.js';
import type { ConfigChanges } from '../../config-service.js';
import type { ConfigError } from '../../../config/validate.js';
import { GATEWAY_API_PREFIX, type Translation } from './translate.js';

/** The outcome of one apply: the version made live (unchanged when nothing differed), or why nothing was. */
export interface GatewayApiApply {
  translation: Translation;
  version?: number;
  /** The whole translation was refused (a listener clash, an apply failure): the live config is untouched. */
  error?: string;
  /** HTTPRoutes refused because a route made from them failed validation ("namespace/name" -> message). */
  refused: Map<string, string>;
}

const MAX_ROUNDS = 5;

/**
 * Apply the Gateway API's view through the config service, like any source: its listeners, routes and
 * clusters (names `gwapi.*`) replace the previous ones as a whole, after the admin API's in config order
 * (so on an equal match an admin route wins). A validation error inside a route made from an HTTPRoute
 * refuses that HTTPRoute only (its status says why) and the rest is applied; an error elsewhere refuses
 * the whole change and the live config stays as it was.
 */
export async function applyGatewayApi(
  changes: ConfigChanges,
  translateWith: (refused: ReadonlyMap<string, string>) => Translation,
): Promise<GatewayApiApply> {
  const refused = new Map<string, string>();
  for (let round = 0; ; round++) {
    const translation = translateWith(refused);
    let routeNames: string[] = [];
    try {
      const r = await changes.change(
        'gateway-api',
        'apply Gateway API objects',
        undefined,
        (draft) => {
          const merged = mergeGatewayApi(draft, translation);
          routeNames = merged.routes.map((x) => x.name);
          return merged;
        },
        'gateway-api',
      );
      return { translation, version: r.version, refused };
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const errors = (e.body as { errors?: Array<ConfigError | string> }).errors ?? [];
      const blamed = blame(errors, routeNames, translation);
      if (e.status !== 400 || blamed.size === 0 || round + 1 >= MAX_ROUNDS) {
        return {
          translation,
          error: `${e.message}: ${errors.map((x) => (typeof x === 'string' ? x : `${x.path}: ${x.message}`)).join('; ')}`,
          refused,
        };
      }
      for (const [owner, message] of blamed) refused.set(owner, message);
    }
  }
}

/** `draft` with every Gateway API resource replaced by the translation's (appended after the others). */
export function mergeGatewayApi(draft: Config, t: Translation): Config {
  const own = (r: { name: string }) => r.name.startsWith(GATEWAY_API_PREFIX);
  return {
    ...draft,
    listeners: [...draft.listeners.filter((l) => !own(l)), ...t.listeners],
    routes: [...draft.routes.filter((r) => !own(r)), ...t.routes],
    clusters: [...draft.clusters.filter((c) => !own(c)), ...t.clusters],
  } as Config;
}

/** Validation errors at `routes[i]...` of a translated route, by the HTTPRoute that made it. */
function blame(errors: Array<ConfigError | string>, routeNames: string[], t: Translation): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of errors) {
    if (typeof e === 'string') continue;
    const m = /^routes\[(\d+)\]/.exec(e.path);
    const owner = m ? t.routeOwners.get(routeNames[Number(m[1])] ?? '') : undefined;
    if (!owner) return new Map();
    if (!out.has(owner)) out.set(owner, `${e.path.replace(/^routes\[\d+\]/, 'route')}: ${e.message}`);
  }
  return out;
}

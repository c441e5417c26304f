import type { Config } from '../../config/schema/index.js';
import { ApiError } from '../api-error.js';

export type ResourceKind = 'clusters' | 'routes' | 'listeners';

type Named = { name: string };

/** Find a named resource or 404. */
export function findResource(config: Config, kind: ResourceKind, name: string): Named {
  const item = (config[kind] as Named[]).find((r) => r.name === name);
  if (!item)
    throw new ApiError(404, 'not found', {
      error: 'not_found',
      message: `${kind.slice(0, -1)} "${name}" does not exist`,
    });
  return item;
}

/** Insert or replace a named resource in a draft; returns whether it was created. */
export function putResource(draft: Config, kind: ResourceKind, name: string, body: unknown): boolean {
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new ApiError(400, 'invalid body', { errors: [{ path: '(body)', message: 'expected a JSON object' }] });
  const item = { ...(body as Record<string, unknown>) };
  if (item.name !== undefined && item.name !== name)
    throw new ApiError(400, 'name mismatch', {
      errors: [{ path: 'name', message: `body name "${String(item.name)}" differs from path name "${name}"` }],
    });
  item.name = name;
  const list = draft[kind] as unknown as Named[];
  const i = list.findIndex((r) => r.name === name);
  if (i === -1) list.push(item as Named);
  else list[i] = item as Named;
  return i === -1;
}

export function deleteResource(draft: Config, kind: ResourceKind, name: string): void {
  const list = draft[kind] as unknown as Named[];
  const i = list.findIndex((r) => r.name === name);
  if (i === -1)
    throw new ApiError(404, 'not found', {
      error: 'not_found',
      message: `${kind.slice(0, -1)} "${name}" does not exist`,
    });
  list.splice(i, 1);
}

type Endpoint = Config['clusters'][number]['endpoints'][number];

/** The endpoint list of a cluster in a draft (404 if the cluster is missing). */
export function endpointsOf(draft: Config, cluster: string): Endpoint[] {
  return (findResource(draft, 'clusters', cluster) as Config['clusters'][number]).endpoints as Endpoint[];
}

import { ApiError } from '../api-error.js';

/**
 * `live` / `ready` when the request target is exactly that probe path (a query allowed), else
 * undefined. Probes answer without credentials; `/live/anything` is not a probe, so it does not
 * answer 200 to an unauthenticated caller and reveal that a path prefix exists.
 */
export function probePath(url: string | undefined): 'live' | 'ready' | undefined {
  if (!url) return undefined;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path === '/live' ? 'live' : path === '/ready' ? 'ready' : undefined;
}

/** Decoded path segments of an (authenticated) API request; a malformed escape is a 400, not a 500. */
export function pathParts(pathname: string): string[] {
  try {
    return pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new ApiError(400, 'bad path', { error: 'bad_request', message: 'the request path has a malformed %-escape' });
  }
}

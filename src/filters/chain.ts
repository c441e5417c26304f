import type { Filter, FilterResult, RequestContext } from './filter.js';

/**
 * Run filters in order until one responds. Stays synchronous while filters are synchronous, so a
 * route whose filters all answer from memory never pays for a promise.
 */
export function runFilters(
  filters: readonly Filter[],
  ctx: RequestContext,
  from = 0,
): FilterResult | Promise<FilterResult> {
  for (let i = from; i < filters.length; i++) {
    const r = filters[i].onRequest(ctx);
    if (r instanceof Promise) return r.then((res) => res ?? runFilters(filters, ctx, i + 1));
    if (r) return r;
  }
  return undefined;
}

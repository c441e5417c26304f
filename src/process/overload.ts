import { getHeapStatistics } from 'node:v8';
import { gauge } from '../observability/metrics.js';

const shedding = gauge(
  'meridian_overload_shedding',
  '1 while the worker sheds load because heap use is over the threshold',
  [],
  'max',
);
const CHECK_MS = 1000;

/**
 * Heap watchdog: sets `target.shedding` while heap use is above `percent` of the heap limit, so the
 * request path answers a fast 503 instead of letting the process run out of memory. 0 disables.
 */
export function watchHeap(target: { shedding: boolean }, percent: () => number): NodeJS.Timeout {
  const limit = getHeapStatistics().heap_size_limit;
  const timer = setInterval(() => {
    const p = percent();
    const over = p > 0 && process.memoryUsage().heapUsed > (limit * p) / 100;
    if (over !== target.shedding) shedding.set(over ? 1 : 0);
    target.shedding = over;
  }, CHECK_MS);
  timer.unref();
  return timer;
}

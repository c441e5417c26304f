/**
 * Earliest-deadline-first scheduler over weighted items (Envoy's EdfScheduler): each item's next
 * deadline is `now + 1 / weight`, so picks are weight-proportional, deterministic and O(log n).
 * Ties break by insertion order.
 */
export class EdfScheduler<T> {
  readonly #heap: Array<{ deadline: number; order: number; weight: number; item: T }> = [];
  #now = 0;
  #seq = 0;

  /**
   * A scheduler over `items` in the state it would reach after `picks` picks from empty (Envoy's
   * EdfScheduler::createWithPicks): each item is charged floor(picks x w / W) picks at once (weights
   * get +1e-13 so exact multiples do not tie differently), then the few leftover picks (< n) run one
   * by one. O(n log n) whatever `picks` is, so a random start costs no more than a plain build.
   * Non-positive weights are skipped.
   */
  static withPicks<T>(items: readonly T[], weights: ArrayLike<number>, picks: number): EdfScheduler<T> {
    const edf = new EdfScheduler<T>();
    picks = Math.floor(picks) % 429496729;
    let sum = 0;
    for (let i = 0; i < items.length; i++) if (weights[i] > 0) sum += weights[i] + 1e-13;
    if (sum === 0) return edf;
    let done = 0;
    let now = 0;
    const perUnit = picks / sum;
    for (let i = 0; i < items.length; i++) {
      const weight = weights[i];
      if (!(weight > 0)) continue;
      const aug = weight + 1e-13;
      let floorPicks = Math.floor(aug * perUnit);
      if (floorPicks > 0 && floorPicks / aug >= perUnit) floorPicks--;
      now = Math.max(now, floorPicks / aug);
      edf.#heap.push({ deadline: (floorPicks + 1) / aug, order: edf.#seq++, weight, item: items[i] });
      done += floorPicks;
    }
    edf.#now = now;
    for (let i = (edf.#heap.length >> 1) - 1; i >= 0; i--) edf.#siftDown(i);
    for (; done < picks; done++) edf.pick();
    return edf;
  }

  add(item: T, weight: number): void {
    if (weight <= 0) return;
    this.#push({ deadline: this.#now + 1 / weight, order: this.#seq++, weight, item });
  }

  get size(): number {
    return this.#heap.length;
  }

  /**
   * Take the item with the earliest deadline and re-schedule it with `reweight(item)` (or its
   * previous weight). Returns undefined when empty.
   */
  pick(reweight?: (item: T) => number): T | undefined {
    const top = this.#heap[0];
    if (!top) return undefined;
    this.#now = top.deadline;
    const weight = reweight ? reweight(top.item) : top.weight;
    top.weight = weight > 0 ? weight : top.weight;
    top.deadline = this.#now + 1 / top.weight;
    top.order = this.#seq++;
    this.#siftDown(0);
    return top.item;
  }

  #less(a: number, b: number): boolean {
    const x = this.#heap[a];
    const y = this.#heap[b];
    return x.deadline < y.deadline || (x.deadline === y.deadline && x.order < y.order);
  }

  #push(e: { deadline: number; order: number; weight: number; item: T }) {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  #siftDown(i: number) {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#less(l, m)) m = l;
      if (r < h.length && this.#less(r, m)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
}

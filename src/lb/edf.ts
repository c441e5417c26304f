/**
 * Earliest-deadline-first scheduler over weighted items (Envoy's EdfScheduler): each item's next
 * deadline is `now + 1 / weight`, so picks are weight-proportional, deterministic and O(log n).
 * Ties break by insertion order.
 */
export class EdfScheduler<T> {
  readonly #heap: Array<{ deadline: number; order: number; weight: number; item: T }> = [];
  #now = 0;
  #seq = 0;

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

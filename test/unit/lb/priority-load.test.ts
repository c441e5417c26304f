import { describe, it, expect } from 'vitest';
import { computePriorityLoad } from '../../../src/lb/priority-load.js';

/** Levels of 100 hosts each with the given healthy (and degraded) percentages. */
const lv = (...pcts: Array<number | [number, number]>) =>
  pcts.map((p) =>
    Array.isArray(p) ? { healthy: p[0], degraded: p[1], total: 100 } : { healthy: p, degraded: 0, total: 100 },
  );
const load = (levels: ReturnType<typeof lv>, panic = 50) => computePriorityLoad(levels, 1.4, panic);

describe('priority levels (Envoy priority.rst, code values)', () => {
  const tableA: Array<[number, number, number]> = [
    [100, 100, 0],
    [72, 100, 0],
    [71, 99, 1],
    [50, 70, 30],
    [25, 35, 65],
    [0, 0, 100],
  ];
  for (const [p0, to0, to1] of tableA) {
    it(`Table A: P0 ${p0}% healthy, P1 100% -> ${to0}/${to1}`, () => {
      expect(load(lv(p0, 100)).healthy).toEqual([to0, to1]);
    });
  }
  const tableB: Array<[number, number, number, number]> = [
    [100, 100, 100, 0],
    [72, 72, 100, 0],
    [71, 71, 99, 1],
    [50, 50, 70, 30],
    [25, 100, 35, 65],
    [25, 25, 50, 50],
  ];
  for (const [p0, p1, to0, to1] of tableB) {
    it(`Table B: P0 ${p0}%, P1 ${p1}% -> ${to0}/${to1}`, () => {
      expect(load(lv(p0, p1)).healthy).toEqual([to0, to1]);
    });
  }
  const tableC: Array<[number[], number[]]> = [
    [
      [100, 100, 100],
      [100, 0, 0],
    ],
    [
      [72, 72, 100],
      [100, 0, 0],
    ],
    [
      [71, 71, 100],
      [99, 1, 0],
    ],
    [
      [50, 50, 100],
      [70, 30, 0],
    ],
    [
      [25, 100, 100],
      [35, 65, 0],
    ],
    [
      [25, 25, 100],
      [35, 35, 30],
    ],
  ];
  for (const [healths, expected] of tableC) {
    it(`Table C: ${healths.join('/')} -> ${expected.join('/')}`, () => {
      expect(load(lv(...healths)).healthy).toEqual(expected);
    });
  }
  it('Table C last row follows the code: 37/35/28 with panic disabled (the doc says 36/36/28)', () => {
    expect(load(lv(25, 25, 20), 0).healthy).toEqual([37, 35, 28]);
  });
  it('Table C last row with the default panic threshold is total panic: 34/33/33 by host counts', () => {
    const r = load(lv(25, 25, 20));
    expect(r.totalPanic).toBe(true);
    expect(r.healthy).toEqual([34, 33, 33]);
  });
  it('small-host rows: P0 n/4 healthy against P1 4/4', () => {
    const rows: Array<[number, number[]]> = [
      [4, [100, 0]],
      [3, [100, 0]],
      [2, [70, 30]],
      [1, [35, 65]],
      [0, [0, 100]],
    ];
    for (const [h, exp] of rows)
      expect(
        computePriorityLoad(
          [
            { healthy: h, degraded: 0, total: 4 },
            { healthy: 4, degraded: 0, total: 4 },
          ],
          1.4,
          50,
        ).healthy,
      ).toEqual(exp);
  });
  it('small-host rows: P0 n/10 healthy against a healthy P1', () => {
    const exp = [
      [0, 100],
      [14, 86],
      [28, 72],
      [42, 58],
      [56, 44],
      [70, 30],
      [84, 16],
      [98, 2],
      [100, 0],
      [100, 0],
      [100, 0],
    ];
    for (let h = 0; h <= 10; h++)
      expect(
        computePriorityLoad(
          [
            { healthy: h, degraded: 0, total: 10 },
            { healthy: 4, degraded: 0, total: 4 },
          ],
          1.4,
          50,
        ).healthy,
      ).toEqual(exp[h]);
  });
});

describe('degraded endpoints (Envoy degraded.rst)', () => {
  const rows: Array<[[number, number], number, number]> = [
    [[100, 0], 100, 0],
    [[71, 0], 100, 0],
    [[71, 29], 99, 1],
    [[25, 65], 35, 65],
  ];
  for (const [[h, d], toH, toD] of rows) {
    it(`P0 ${h}% healthy, ${d}% degraded -> ${toH}% healthy, ${toD}% degraded`, () => {
      const r = load(lv([h, d]));
      expect([r.healthy[0], r.degraded[0]]).toEqual([toH, toD]);
    });
  }
  it('5% healthy, 95% unhealthy: P0 panics and takes 100% across all its hosts', () => {
    const r = load(lv([5, 0]));
    expect(r.healthy).toEqual([100]);
    expect(r.panic).toEqual([true]);
  });
  it('fills degraded buckets only after the healthy ones of every priority', () => {
    const r = computePriorityLoad(
      [
        { healthy: 2, degraded: 2, total: 4 },
        { healthy: 1, degraded: 0, total: 4 },
      ],
      1.4,
      50,
    );
    // Health 70 (P0) and 35 (P1) already cover 100, so P0's degraded availability (70) gets nothing.
    expect(r.healthy).toEqual([70, 30]);
    expect(r.degraded).toEqual([0, 0]);
  });
});

describe('panic threshold (Envoy panic_threshold.rst)', () => {
  const tableE: Array<[number, number, number, boolean, number, boolean, number]> = [
    [72, 72, 100, false, 0, false, 100],
    [71, 71, 99, false, 1, false, 100],
    [50, 60, 70, false, 30, false, 100],
    [25, 100, 35, false, 65, false, 100],
    [25, 25, 50, true, 50, true, 70],
    [5, 65, 8, true, 92, false, 98],
  ];
  for (const [p0, p1, to0, panic0, to1, panic1, total] of tableE) {
    it(`Table E: ${p0}%/${p1}% -> ${to0}${panic0 ? ' (panic)' : ''} / ${to1}${panic1 ? ' (panic)' : ''}, total ${total}`, () => {
      const r = load(lv(p0, p1));
      expect(r.healthy).toEqual([to0, to1]);
      expect(r.panic).toEqual([panic0, panic1]);
      expect(r.normalizedTotal).toBe(total);
    });
  }
  it('total panic splits by host counts: 2 and 8 hosts -> 20/80', () => {
    const r = computePriorityLoad(
      [
        { healthy: 0, degraded: 0, total: 2 },
        { healthy: 1, degraded: 0, total: 8 },
      ],
      1.4,
      50,
    );
    expect(r.healthy).toEqual([20, 80]);
  });
  it('a threshold of 0 disables panic: nothing healthy leaves 100% on P0 (503 no healthy upstream)', () => {
    const r = computePriorityLoad([{ healthy: 0, degraded: 0, total: 3 }], 1.4, 0);
    expect(r.panic).toEqual([false]);
    expect(r.healthy).toEqual([100]);
  });
  it('loads always sum to exactly 100', () => {
    for (let a = 0; a <= 10; a++)
      for (let b = 0; b <= 10; b++)
        for (let d = 0; d + a <= 10; d++) {
          const r = computePriorityLoad(
            [
              { healthy: a, degraded: d, total: 10 },
              { healthy: b, degraded: 0, total: 10 },
              { healthy: 3, degraded: 0, total: 7 },
            ],
            1.4,
            50,
          );
          expect(r.healthy.reduce((x, y) => x + y) + r.degraded.reduce((x, y) => x + y)).toBe(100);
        }
  });
});

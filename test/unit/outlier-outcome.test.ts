import { describe, it, expect } from 'vitest';
import { Outcome, outcomeOf } from '../../src/outlier/outcome.js';

describe('outcome classification (shared by the forwarder and outlier detection)', () => {
  it('0 is a local-origin failure, 502/503/504 gateway errors, other 5xx HTTP 5xx, the rest success', () => {
    expect(outcomeOf(0)).toBe(Outcome.LOCAL_FAILURE);
    for (const s of [502, 503, 504]) expect(outcomeOf(s)).toBe(Outcome.GATEWAY_ERROR);
    for (const s of [500, 501, 505, 599]) expect(outcomeOf(s)).toBe(Outcome.HTTP_5XX);
    for (const s of [200, 204, 301, 404, 429, 499]) expect(outcomeOf(s)).toBe(Outcome.SUCCESS);
  });
});

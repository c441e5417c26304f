import { describe, it, expect, vi, afterEach } from 'vitest';
import { HedgeRace } from '../../../src/proxy/hedge.js';

class Racer {
  cancelled: string | undefined;
  constructor(readonly name: string) {}
  cancel(reason: 'lost' | 'gone'): void {
    this.cancelled = reason;
  }
}

afterEach(() => vi.useRealTimers());

describe('hedging (HedgeRace)', () => {
  it('fires after the delay; the first racer to answer wins and the other is cancelled as lost', () => {
    vi.useFakeTimers();
    const race = new HedgeRace<Racer>();
    const fire = vi.fn();
    race.arm(50, fire);
    vi.advanceTimersByTime(49);
    expect(fire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fire).toHaveBeenCalledTimes(1);
    const first = new Racer('first');
    const second = new Racer('hedge');
    race.started(first, second);
    expect(race.racing).toBe(true);
    race.settle(second);
    expect(first.cancelled).toBe('lost');
    expect(second.cancelled).toBeUndefined();
  });

  it('an answer before the delay disarms it: no hedge is sent', () => {
    vi.useFakeTimers();
    const race = new HedgeRace<Racer>();
    const fire = vi.fn();
    race.arm(50, fire);
    race.settle(new Racer('only'));
    vi.advanceTimersByTime(100);
    expect(fire).not.toHaveBeenCalled();
  });

  it('the client leaving abandons the race: no hedge, the earlier racer cancelled as gone', () => {
    vi.useFakeTimers();
    const race = new HedgeRace<Racer>();
    const fire = vi.fn();
    race.arm(50, fire);
    const first = new Racer('first');
    race.started(first, new Racer('hedge'));
    race.abandon();
    vi.advanceTimersByTime(100);
    expect(fire).not.toHaveBeenCalled();
    expect(first.cancelled).toBe('gone');
  });

  it('re-arming (a retry) replaces the pending timer instead of adding one', () => {
    vi.useFakeTimers();
    const race = new HedgeRace<Racer>();
    const fire = vi.fn();
    race.arm(50, fire);
    vi.advanceTimersByTime(30);
    race.arm(50, fire);
    vi.advanceTimersByTime(30);
    expect(fire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(20);
    expect(fire).toHaveBeenCalledTimes(1);
  });
});

import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigStore } from '../../../../src/control/store/config-store.js';

/** Real files in a temp dir: the store's history is bounded by count and by bytes, and survives a reload. */
describe('ConfigStore history', () => {
  it('keeps the newest versions that fit the byte budget (never fewer than two), on disk and after a reload', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meridian-store-'));
    const store = new ConfigStore<{ blob: string; n: number }>(dir, 'state.json', { keepBytes: 25_000 });
    await store.load();
    for (let n = 1; n <= 6; n++) await store.commit({ blob: 'x'.repeat(10_000), n }, `test:${n}`);
    // Each version is ~10 KB of JSON: the newest two fit 25 KB, a third would not.
    expect(store.list().map((v) => v.version)).toEqual([5, 6]);
    const onDisk = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as {
      current: number;
      versions: Array<{ version: number; source: string; config: { n: number } }>;
    };
    expect(onDisk.current).toBe(6);
    expect(onDisk.versions.map((v) => [v.version, v.source, v.config.n])).toEqual([
      [5, 'test:5', 5],
      [6, 'test:6', 6],
    ]);
    const reloaded = new ConfigStore<{ blob: string; n: number }>(dir, 'state.json', { keepBytes: 25_000 });
    expect(await reloaded.load()).toBe(true);
    expect(reloaded.current!.config.n).toBe(6);
    expect(reloaded.current!.hash).toBe(store.current!.hash);
    // A huge version still keeps the one before it (a rollback target).
    await reloaded.commit({ blob: 'y'.repeat(50_000), n: 7 }, 'test:7');
    expect(reloaded.list().map((v) => v.version)).toEqual([6, 7]);
  });

  it('small versions are bounded by count (50)', async () => {
    const store = new ConfigStore<{ n: number }>(mkdtempSync(join(tmpdir(), 'meridian-store-')));
    await store.load();
    for (let n = 1; n <= 55; n++) await store.commit({ n }, 'test');
    expect(store.list().map((v) => v.version)).toEqual(Array.from({ length: 50 }, (_, i) => i + 6));
  });
});

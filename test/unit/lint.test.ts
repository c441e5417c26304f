import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from '../helpers/gateway.js';

/**
 * The linter's verdict is part of the suite, so a rule broken anywhere fails the run: biome.json says
 * which rules (among them no import cycles in src/ and at most 6 positional parameters per function).
 */
describe('lint (biome.json)', () => {
  it('src/, test/ and benchmarks/ pass the linter and are formatted', () => {
    const r = spawnSync(join(REPO, 'node_modules/.bin/biome'), ['check', '--max-diagnostics=50', '--colors=off'], {
      cwd: REPO,
      encoding: 'utf8',
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  }, 60_000);
});

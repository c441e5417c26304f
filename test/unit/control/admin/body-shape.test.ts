import { describe, it, expect } from 'vitest';
import { checkBodyShape, checkYamlDepth, MAX_BODY_DEPTH } from '../../../../src/control/admin/body-shape.js';

/** An object nested `levels` deep, the outermost object being level 1: {a:{a:...{a:1}}}. */
const nested = (levels: number) => JSON.parse('{"a":'.repeat(levels) + '1' + '}'.repeat(levels));

describe('admin body shape', () => {
  it(`accepts ${MAX_BODY_DEPTH} levels of nesting and refuses ${MAX_BODY_DEPTH + 1}, naming where`, () => {
    expect(checkBodyShape(nested(MAX_BODY_DEPTH))).toBeUndefined();
    const refused = checkBodyShape(nested(MAX_BODY_DEPTH + 1));
    expect(refused?.message).toBe('nested more than 64 levels deep (the body depth limit)');
    expect(refused?.path).toBe(Array(MAX_BODY_DEPTH).fill('a').join('.'));
  });

  it('counts YAML nesting on the syntax tree with the same limit, block or flow', () => {
    const blockSeqs = (levels: number) => '- '.repeat(levels) + 'x\n';
    expect(checkYamlDepth(blockSeqs(MAX_BODY_DEPTH))).toBeUndefined();
    expect(checkYamlDepth(blockSeqs(MAX_BODY_DEPTH + 1))?.message).toMatch(/nested more than 64/);
    expect(checkYamlDepth('{a: '.repeat(MAX_BODY_DEPTH + 1) + '1' + '}'.repeat(MAX_BODY_DEPTH + 1))?.message).toMatch(
      /nested more than 64/,
    );
    expect(checkYamlDepth('x:\n  ' + '- '.repeat(100_000) + 'x\ny: 1\n')?.message).toMatch(/nested more than 64/);
  });

  it('refuses a __proto__ key at any depth, in objects inside arrays too, and accepts a constructor key (the schema refuses that)', () => {
    expect(checkBodyShape(JSON.parse('{"routes":[{"match":{"__proto__":{}}}]}'))).toEqual({
      path: 'routes[0].match.__proto__',
      message: 'the key "__proto__" is not allowed',
    });
    expect(checkBodyShape(JSON.parse('{"__proto__":1}'))?.path).toBe('__proto__');
    expect(checkBodyShape({ routes: [{ match: { constructor: 1 } }] })).toBeUndefined();
  });
});

import { describe, it, expect } from 'vitest';
import { normalizePath } from '../../../src/listener/path-normalize.js';

describe('path normalization', () => {
  const rows: Array<[string, string | null]> = [
    ['/plain/path', '/plain/path'],
    ['/admin/../public', '/public'],
    ['/%61dmin', '/admin'],
    ['/a//b///c', '/a/b/c'],
    ['/a/./b/../c', '/a/c'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/b/..', '/a/'],
    ['/a/%2Fb', null],
    ['/a/%5cb', null],
    ['/a\\b', null],
    ['/a%00b', null],
    ['/a%zz', null],
    ['/../etc/passwd', null],
    ['/x%20y', '/x%20y'],
    ['/caf%c3%a9', '/caf%C3%A9'],
  ];
  for (const [input, expected] of rows) {
    it(`normalizes ${input} to ${expected}`, () => expect(normalizePath(input, { mergeSlashes: true })).toBe(expected));
  }
  it('keeps repeated slashes when merging is off', () => {
    expect(normalizePath('/a//b/./c', { mergeSlashes: false })).toBe('/a//b/c');
  });
  it('returns the very same string on the fast path', () => {
    const p = '/api/v1/users';
    expect(normalizePath(p)).toBe(p);
  });
});

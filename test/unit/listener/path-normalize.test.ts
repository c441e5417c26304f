import { describe, it, expect } from 'vitest';
import { normalizePath } from '../../../src/listener/path-normalize.js';

describe('path normalization', () => {
  const rows: Array<[string, string | null]> = [
    ['/plain/path', '/plain/path'],
    ['/', '/'],
    ['/admin/../public', '/public'],
    ['/%61dmin', '/admin'],
    ['/%41%44MIN', '/ADMIN'],
    ['/a//b', '/a/b'],
    ['/a//b///c', '/a/b/c'],
    ['//admin', '/admin'],
    ['/a/./b/../c', '/a/c'],
    ['/a/%2e%2e/b', '/b'],
    ['/a/%2E%2e/b', '/b'],
    ['/a/.%2e/b', '/b'],
    ['/admin/%2e%2e/public', '/public'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/.', '/a/'],
    ['/a/', '/a/'],
    ['/a//', '/a/'],
    ['/..a/b', '/..a/b'],
    ['/a/.b', '/a/.b'],
    ['/a/%2Fb', null],
    ['/a/%2fb', null],
    ['/a/%5cb', null],
    ['/a\\b', null],
    ['/a%00b', null],
    ['/a%zz', null],
    ['/a%4', null],
    ['/a%', null],
    ['/../etc/passwd', null],
    ['/a/../../etc', null],
    ['/x%20y', '/x%20y'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/q%3fx', '/q%3Fx'],
    ['*', '*'],
    ['http://evil/admin', null],
    ['admin', null],
  ];
  for (const [input, expected] of rows) {
    it(`normalizes ${JSON.stringify(input)} to ${JSON.stringify(expected)}`, () =>
      expect(normalizePath(input, { mergeSlashes: true })).toBe(expected));
  }

  it('keeps repeated slashes when merging is off but still removes dot segments', () => {
    expect(normalizePath('/a//b/./c', { mergeSlashes: false })).toBe('/a//b/c');
    expect(normalizePath('/a//..', { mergeSlashes: false })).toBe('/a/');
  });

  it('keeps escaped slashes encoded (never decoded) when they are allowed', () => {
    expect(normalizePath('/a/%2fb/%5c', { rejectEscapedSlashes: false })).toBe('/a/%2Fb/%5C');
    expect(normalizePath('/a/%2f..%2fadmin', { rejectEscapedSlashes: false })).toBe('/a/%2F..%2Fadmin');
  });

  it('merges slashes by default', () => {
    expect(normalizePath('/a//b')).toBe('/a/b');
  });

  it('returns the very same string on the fast path', () => {
    const p = '/api/v1/users.json';
    expect(normalizePath(p)).toBe(p);
  });

  it('is idempotent: normalizing a normalized path changes nothing', () => {
    for (const [, expected] of rows) if (expected !== null) expect(normalizePath(expected)).toBe(expected);
  });
});

import { describe, it, expect } from 'vitest';
import { knownName, LOWER, NAMES } from '../../../src/proxy/header-names.js';
import { buildResponseHeaders, compileHeaderOps, NO_HEADER_OPS } from '../../../src/proxy/headers.js';

/** Name bytes as undici hands them over: a view into one larger buffer, not a Buffer of their own. */
function view(name: string): Buffer {
  const whole = Buffer.from(`HTTP/1.1 200 OK\r\n${name}: x\r\n`, 'latin1');
  return whole.subarray(17, 17 + Buffer.byteLength(name, 'latin1'));
}

describe('knownName', () => {
  it('finds every name of the table, as spelled and in lower case, with its lower-case form', () => {
    expect(NAMES.length).toBeGreaterThan(40);
    for (let i = 0; i < NAMES.length; i++) {
      expect(knownName(view(NAMES[i]))).toBe(i);
      expect(LOWER[i]).toBe(NAMES[i].toLowerCase());
      expect(NAMES[knownName(view(NAMES[i].toLowerCase()))]).toBe(NAMES[i].toLowerCase());
    }
  });

  it('answers -1 for a name spelled in another case, a prefix, a longer name and no name at all', () => {
    for (const name of ['CONTENT-LENGTH', 'Content-length', 'Content-Lengt', 'Content-Lengthx', 'X-App', 'Dat', ''])
      expect(knownName(view(name)), name).toBe(-1);
  });

  it("answers -1 for bytes that share a known name's length and first, middle and last bytes", () => {
    // "Date" hashes by D, t (middle: index 2), e and length 4; "Dote" has the same four.
    expect(knownName(view('Dote'))).toBe(-1);
    expect(knownName(view('Date'))).toBe(NAMES.indexOf('Date'));
  });
});

describe('buildResponseHeaders with known and unknown names', () => {
  it('keeps each name as the upstream spelled it, and filters by its lower-case form either way', () => {
    const raw = ['Content-Type', 'text/plain', 'CONTENT-LANGUAGE', 'en', 'x-App', '1', 'KEEP-ALIVE', 'timeout=5']
      .concat(['Keep-Alive', 'timeout=5', 'Server', 'nginx'])
      .map(view);
    expect(buildResponseHeaders(raw, NO_HEADER_OPS, undefined, false)).toEqual([
      'Content-Type',
      'text/plain',
      'CONTENT-LANGUAGE',
      'en',
      'x-App',
      '1',
      'Server',
      'nginx',
    ]);
    const ops = compileHeaderOps({ remove: ['server', 'x-app'] });
    expect(buildResponseHeaders(raw, ops, undefined, false)).toEqual([
      'Content-Type',
      'text/plain',
      'CONTENT-LANGUAGE',
      'en',
    ]);
  });
});

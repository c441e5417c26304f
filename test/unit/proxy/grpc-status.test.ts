import { describe, it, expect } from 'vitest';
import { grpcStatusIn, grpcToHttpStatus } from '../../../src/proxy/grpc-status.js';
import { trailersToObject } from '../../../src/proxy/headers.js';

describe('gRPC status to HTTP status (Envoy grpcToHttpStatus)', () => {
  it.each([
    ['0', 200],
    ['1', 499],
    ['2', 500],
    ['3', 400],
    ['4', 504],
    ['5', 404],
    ['6', 409],
    ['7', 403],
    ['8', 429],
    ['9', 400],
    ['10', 409],
    ['11', 400],
    ['12', 501],
    ['13', 500],
    ['14', 503],
    ['15', 500],
    ['16', 401],
    ['17', 500],
    ['99', 500],
  ])('grpc-status %s -> %i', (value, http) => {
    expect(grpcToHttpStatus(value)).toBe(http);
  });

  it('a value that is not a status maps to nothing', () => {
    expect(grpcToHttpStatus(undefined)).toBeUndefined();
    expect(grpcToHttpStatus('abc')).toBeUndefined();
    expect(grpcToHttpStatus('-1')).toBeUndefined();
    expect(grpcToHttpStatus(['14', '0'])).toBe(503);
  });

  it('finds grpc-status in raw headers of either case, as Buffers or strings', () => {
    expect(
      grpcStatusIn([
        Buffer.from('content-type'),
        Buffer.from('application/grpc'),
        Buffer.from('Grpc-Status'),
        Buffer.from('14'),
      ]),
    ).toBe(14);
    expect(grpcStatusIn(['grpc-status', '0'])).toBe(0);
    expect(grpcStatusIn(['grpc-message', 'x'])).toBe(-1);
    expect(grpcStatusIn(['grpc-status', 'x'])).toBe(-1);
  });
});

describe('trailersToObject', () => {
  it('none -> undefined', () => {
    expect(trailersToObject(null)).toBeUndefined();
    expect(trailersToObject([])).toBeUndefined();
  });

  it('keeps repeats, lower-cases names, decodes latin1 and drops framing fields', () => {
    const t = trailersToObject([
      Buffer.from('Grpc-Status'),
      Buffer.from('0'),
      Buffer.from('x-a'),
      Buffer.from('1'),
      Buffer.from('x-a'),
      Buffer.from('2'),
      Buffer.from('content-length'),
      Buffer.from('5'),
      Buffer.from('transfer-encoding'),
      Buffer.from('chunked'),
      Buffer.from('x-latin'),
      Buffer.from([0xe9]),
    ]);
    expect({ ...t }).toEqual({ 'grpc-status': '0', 'x-a': ['1', '2'], 'x-latin': '\u00e9' });
  });
});

describe('contentLengthIn', () => {
  it('reads Content-Length from a flat list in any case, -1 when absent', async () => {
    const { contentLengthIn } = await import('../../../src/proxy/headers.js');
    expect(contentLengthIn(['host', 'h', 'Content-Length', '42'])).toBe(42);
    expect(contentLengthIn(['host', 'h', 'content-type', 'text/plain'])).toBe(-1);
  });
});

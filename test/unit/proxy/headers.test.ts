import { describe, it, expect } from 'vitest';
import {
  buildUpstreamHeaders,
  buildResponseHeaders,
  compileHeaderOps,
  removeHeaders,
  flatToObject,
  IDENTITY_HEADERS,
  NO_HEADER_OPS,
  type ForwardFacts,
  type HeaderOps,
} from '../../../src/proxy/headers.js';

const CLIENT_IP = '203.0.113.7';
const AUTHORITY = 'api.example.com';

const facts = (over: Partial<ForwardFacts> = {}): ForwardFacts => ({
  clientIp: CLIENT_IP,
  proto: 'https',
  authority: AUTHORITY,
  trustForwarded: false,
  rejectUnderscores: true,
  upgrade: false,
  identity: new Set([...IDENTITY_HEADERS, 'x-consumer']),
  requestId: undefined,
  traceparent: undefined,
  ...over,
});

/** Headers the builder always generates when the gateway does not trust X-Forwarded-*. */
const generated = (over: { xff?: string; via?: string } = {}) => [
  'host',
  AUTHORITY,
  'x-forwarded-for',
  over.xff ?? CLIENT_IP,
  'x-forwarded-proto',
  'https',
  'x-forwarded-host',
  AUTHORITY,
  'via',
  over.via ?? '1.1 meridian',
];

function upstream(raw: string[], f: ForwardFacts = facts(), ops: HeaderOps = NO_HEADER_OPS) {
  const out: string[] = [];
  const err = buildUpstreamHeaders(raw, f, ops, out);
  return { err, out, f };
}

const valuesOf = (flat: readonly string[], name: string) =>
  flat.filter((_, i) => i % 2 === 1 && flat[i - 1].toLowerCase() === name);

describe('buildUpstreamHeaders', () => {
  it('keeps order, repeated values and the original name case', () => {
    const raw = ['X-Multi', 'a', 'Accept', '*/*', 'x-multi', 'b', 'Cookie', 'c=1', 'X-MULTI', 'c'];
    const { err, out } = upstream(raw);
    expect(err).toBeUndefined();
    expect(out).toEqual([...raw, ...generated()]);
  });

  it('skips pseudo headers', () => {
    const { err, out } = upstream([
      ':method',
      'GET',
      ':authority',
      'other.example',
      ':path',
      '/x',
      'accept',
      'text/html',
    ]);
    expect(err).toBeUndefined();
    expect(out).toEqual(['accept', 'text/html', ...generated()]);
  });

  it('replaces the client Host with the authority', () => {
    const { out } = upstream(['Host', 'evil.example', 'accept', '*/*']);
    expect(valuesOf(out, 'host')).toEqual([AUTHORITY]);
  });

  it('rejects a duplicate Host whatever its case', () => {
    expect(upstream(['Host', 'a.example', 'host', 'a.example']).err).toBe('bad_request');
    expect(upstream(['HOST', 'a.example', 'accept', '*/*', 'Host', 'b.example']).err).toBe('bad_request');
  });

  it('rejects header names with underscores only when rejectUnderscores is set', () => {
    expect(upstream(['accept', '*/*', 'X_Custom', '1']).err).toBe('bad_request');
    const { err, out } = upstream(['accept', '*/*', 'X_Custom', '1'], facts({ rejectUnderscores: false }));
    expect(err).toBeUndefined();
    expect(out.slice(0, 4)).toEqual(['accept', '*/*', 'X_Custom', '1']);
  });

  it('strips hop-by-hop headers', () => {
    const { out } = upstream([
      'Connection',
      'keep-alive',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Proxy-Connection',
      'keep-alive',
      'Proxy-Authorization',
      'Basic eDp5',
      'Proxy-Authenticate',
      'Basic',
      'Trailer',
      'x-checksum',
      'HTTP2-Settings',
      'AAMAAABkAAQAAP__',
      'Expect',
      '100-continue',
      'Upgrade',
      'websocket',
      'x-keep',
      '1',
    ]);
    expect(out).toEqual(['x-keep', '1', ...generated()]);
  });

  it('removes the headers Connection nominates, wherever they appear', () => {
    const { out } = upstream([
      'x-a',
      '1',
      'Connection',
      'X-A, x-b , close',
      'X-B',
      '2',
      'x-c',
      '3',
      'connection',
      'X-D',
      'x-d',
      '4',
    ]);
    expect(out).toEqual(['x-c', '3', ...generated()]);
  });

  it('forwards TE only as "te: trailers"', () => {
    expect(upstream(['TE', ' Trailers ']).out).toEqual(['te', 'trailers', ...generated()]);
    expect(upstream(['te', 'gzip']).out).toEqual(generated());
    expect(upstream(['te', 'trailers, deflate']).out).toEqual(generated());
  });

  it('forwards Upgrade and sets connection: upgrade only for upgrade requests', () => {
    const raw = ['Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'];
    const up = upstream(raw, facts({ upgrade: true })).out;
    expect(up).toEqual(['Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k', 'connection', 'upgrade', ...generated()]);
    const plain = upstream(raw).out;
    expect(plain).toEqual(['Sec-WebSocket-Key', 'k', ...generated()]);
  });

  it('strips built-in and configured identity headers from the client', () => {
    const raw = [
      'X-Forwarded-Client-Cert',
      'By=spoof',
      'X-Real-IP',
      '10.0.0.1',
      'x-spiffe-id',
      'spiffe://evil/x',
      'X-Consumer',
      'admin',
      'x-other',
      'ok',
    ];
    expect(upstream(raw).out).toEqual(['x-other', 'ok', ...generated()]);
    // Names come from facts.identity: a claim header not configured on this snapshot is forwarded.
    const builtInsOnly = upstream(raw, facts({ identity: IDENTITY_HEADERS })).out;
    expect(builtInsOnly.slice(0, 4)).toEqual(['X-Consumer', 'admin', 'x-other', 'ok']);
  });

  it('overwrites X-Forwarded-* from an untrusted client', () => {
    const { out } = upstream([
      'X-Forwarded-For',
      '1.1.1.1',
      'X-Forwarded-Proto',
      'http',
      'X-Forwarded-Host',
      'evil.example',
      'accept',
      '*/*',
    ]);
    expect(out).toEqual(['accept', '*/*', ...generated()]);
  });

  it('appends to X-Forwarded-For and keeps X-Forwarded-Proto/-Host from a trusted client', () => {
    const { out } = upstream(
      [
        'X-Forwarded-For',
        '1.1.1.1',
        'X-Forwarded-Proto',
        'http',
        'x-forwarded-for',
        '2.2.2.2, 3.3.3.3',
        'X-Forwarded-Host',
        'front.example',
      ],
      facts({ trustForwarded: true }),
    );
    expect(out).toEqual([
      'X-Forwarded-Proto',
      'http',
      'X-Forwarded-Host',
      'front.example',
      'host',
      AUTHORITY,
      'x-forwarded-for',
      `1.1.1.1, 2.2.2.2, 3.3.3.3, ${CLIENT_IP}`,
      'via',
      '1.1 meridian',
    ]);
  });

  it('fills in X-Forwarded-Proto/-Host for a trusted client that sent none', () => {
    const { out } = upstream(['X-Forwarded-For', '1.1.1.1'], facts({ trustForwarded: true }));
    expect(out).toEqual([
      'host',
      AUTHORITY,
      'x-forwarded-for',
      `1.1.1.1, ${CLIENT_IP}`,
      'x-forwarded-proto',
      'https',
      'x-forwarded-host',
      AUTHORITY,
      'via',
      '1.1 meridian',
    ]);
  });

  it('appends the gateway to Via', () => {
    const { out } = upstream(['Via', '1.0 fred', 'accept', '*/*', 'via', '1.1 p.example']);
    expect(out).toEqual(['accept', '*/*', ...generated({ via: '1.0 fred, 1.1 p.example, 1.1 meridian' })]);
  });

  it('captures the first x-request-id and traceparent into the facts and forwards them', () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const { out, f } = upstream(['X-Request-Id', 'req-1', 'traceparent', tp, 'x-request-id', 'req-2']);
    expect(f.requestId).toBe('req-1');
    expect(f.traceparent).toBe(tp);
    expect(out.slice(0, 6)).toEqual(['X-Request-Id', 'req-1', 'traceparent', tp, 'x-request-id', 'req-2']);
  });

  it('does not overwrite a request id the caller already set', () => {
    const { f } = upstream(['x-request-id', 'from-client'], facts({ requestId: 'generated' }));
    expect(f.requestId).toBe('generated');
  });

  it('applies route ops: set replaces, add appends, remove drops', () => {
    const ops = compileHeaderOps({ set: { 'X-Env': 'prod' }, add: { 'X-Tag': 't1' }, remove: ['X-Debug'] });
    const { out } = upstream(['x-env', 'client', 'X-Tag', 'c', 'X-DEBUG', '1', 'accept', '*/*'], facts(), ops);
    expect(out).toEqual(['X-Tag', 'c', 'accept', '*/*', ...generated(), 'x-env', 'prod', 'x-tag', 't1']);
    expect(valuesOf(out, 'x-env')).toEqual(['prod']);
    expect(valuesOf(out, 'x-tag')).toEqual(['c', 't1']);
  });
});

describe('compileHeaderOps', () => {
  it('returns the empty ops for a route without a section', () => {
    expect(compileHeaderOps(undefined)).toBe(NO_HEADER_OPS);
    expect(compileHeaderOps({}).empty).toBe(true);
  });

  it('lower-cases names and removes the incoming value of every set header', () => {
    const ops = compileHeaderOps({ set: { 'X-A': '1', 'X-B': '2' }, add: { 'X-C': '3' }, remove: ['X-Gone'] });
    expect(ops.set).toEqual(['x-a', '1', 'x-b', '2']);
    expect(ops.add).toEqual(['x-c', '3']);
    expect([...ops.remove].sort()).toEqual(['x-a', 'x-b', 'x-gone']);
    expect(ops.empty).toBe(false);
  });

  it('is not empty with only an add', () => {
    const ops = compileHeaderOps({ add: { 'x-a': '1' } });
    expect(ops.empty).toBe(false);
    expect(ops.remove.size).toBe(0);
  });
});

describe('removeHeaders', () => {
  it('removes names of a set in place, case-insensitively, keeping order', () => {
    const flat = ['A', '1', 'X-Drop', '2', 'b', '3', 'x-drop', '4', 'C', '5'];
    removeHeaders(flat, new Set(['x-drop']));
    expect(flat).toEqual(['A', '1', 'b', '3', 'C', '5']);
  });

  it('removes names of an array', () => {
    const flat = ['Authorization', 'Bearer t', 'X-Api-Key', 'k', 'accept', '*/*'];
    removeHeaders(flat, ['authorization', 'x-api-key']);
    expect(flat).toEqual(['accept', '*/*']);
  });
});

describe('buildResponseHeaders', () => {
  it('decodes Buffers as latin1 so non-ASCII bytes round-trip', () => {
    const bytes = Buffer.from([0x63, 0x61, 0x66, 0xc3, 0xa9]); // "café" in UTF-8
    const out = buildResponseHeaders(
      [Buffer.from('Content-Type'), Buffer.from('text/plain'), Buffer.from('X-Name'), bytes],
      NO_HEADER_OPS,
      undefined,
      false,
    );
    expect(out[0]).toBe('Content-Type');
    expect(out[2]).toBe('X-Name');
    expect(out[3]).toBe('caf\u00c3\u00a9');
    expect(out[3]).toHaveLength(5);
    expect(Buffer.from(out[3], 'latin1').equals(bytes)).toBe(true);
  });

  it('keeps repeated Set-Cookie headers in order', () => {
    const out = buildResponseHeaders(
      ['Set-Cookie', 'a=1', 'Content-Length', '0', 'set-cookie', 'b=2'],
      NO_HEADER_OPS,
      undefined,
      false,
    );
    expect(out).toEqual(['Set-Cookie', 'a=1', 'Content-Length', '0', 'set-cookie', 'b=2']);
  });

  const hop = [
    'Connection',
    'Upgrade',
    'Upgrade',
    'websocket',
    'Keep-Alive',
    'timeout=5',
    'Transfer-Encoding',
    'chunked',
    'Proxy-Authenticate',
    'Basic',
    'Trailer',
    'x-sum',
    'x-app',
    '1',
  ];

  it('drops the headers an upstream Connection header nominates', () => {
    const raw = ['Connection', 'x-secret, close', 'X-Secret', 'internal', 'content-type', 'text/plain'].map((v) =>
      Buffer.from(v),
    );
    expect(buildResponseHeaders(raw, NO_HEADER_OPS, undefined, false)).toEqual(['content-type', 'text/plain']);
  });

  it('drops hop-by-hop headers', () => {
    expect(buildResponseHeaders(hop, NO_HEADER_OPS, undefined, false)).toEqual(['x-app', '1']);
  });

  it('keeps Upgrade and Connection (only) with keepUpgrade', () => {
    expect(buildResponseHeaders(hop, NO_HEADER_OPS, undefined, true)).toEqual([
      'Connection',
      'Upgrade',
      'Upgrade',
      'websocket',
      'x-app',
      '1',
    ]);
  });

  it('applies ops, then appends extra headers', () => {
    const ops = compileHeaderOps({
      set: { 'Cache-Control': 'no-store' },
      add: { 'X-Served-By': 'meridian' },
      remove: ['Server'],
    });
    const out = buildResponseHeaders(
      ['Server', 'nginx', 'cache-control', 'max-age=60', 'X-Served-By', 'upstream', 'content-type', 'text/plain'],
      ops,
      ['x-ratelimit-remaining', '9'],
      false,
    );
    expect(out).toEqual([
      'X-Served-By',
      'upstream',
      'content-type',
      'text/plain',
      'cache-control',
      'no-store',
      'x-served-by',
      'meridian',
      'x-ratelimit-remaining',
      '9',
    ]);
  });
});

describe('flatToObject', () => {
  it('lower-cases names and groups repeated ones into arrays in order', () => {
    const obj = flatToObject([
      'Set-Cookie',
      'a=1',
      'Content-Type',
      'text/plain',
      'set-cookie',
      'b=2',
      'SET-COOKIE',
      'c=3',
    ]);
    expect(obj).toEqual({ 'set-cookie': ['a=1', 'b=2', 'c=3'], 'content-type': 'text/plain' });
    expect(Object.keys(obj)).toEqual(['set-cookie', 'content-type']);
  });

  it('keeps a header named __proto__ as an own key', () => {
    const obj = flatToObject(['__proto__', 'x']);
    expect(Object.getPrototypeOf(obj)).toBeNull();
    expect(Object.keys(obj)).toEqual(['__proto__']);
    expect(obj['__proto__']).toBe('x');
  });
});

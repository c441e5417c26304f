import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startInProcess, baseConfig, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { TestCa } from '../helpers/pki.js';

/**
 * gRPC through the gateway with a real client and server (@grpc/grpc-js): messages are raw bytes
 * (identity serializers), so no .proto is needed; what matters is HTTP/2 framing, length-prefixed
 * messages, and the grpc-status / grpc-message / metadata trailers arriving intact.
 */
const id = (b: Buffer) => b;
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/meridian.test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
});
const service = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  Fail: method('Fail', false, false),
  Slow: method('Slow', false, false),
  Unavailable: method('Unavailable', false, false),
  StreamThenUnavailable: method('StreamThenUnavailable', false, true),
} as const;
const EchoClient = grpc.makeGenericClientConstructor(service as unknown as grpc.ServiceDefinition, 'Echo');
type Client = InstanceType<typeof EchoClient> & Record<string, (...a: unknown[]) => unknown>;

let server: grpc.Server;
let gw: InProcessGateway;
let ca: TestCa;
let tlsAddress = '';
let unavailableCalls = 0;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(service as unknown as grpc.ServiceDefinition, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-echo-trailer', 'bye');
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), md);
    },
    ServerStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const n = Number(call.request.toString());
      for (let i = 0; i < n; i++) call.write(Buffer.from(`message ${i}`));
      call.end();
    },
    Fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-reason', 'no such widget');
      md.set('detail-bin', Buffer.from([0, 1, 2, 255]));
      cb({ code: grpc.status.NOT_FOUND, details: 'widget 42 not found', metadata: md });
    },
    Slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const t = setTimeout(() => cb(null, Buffer.from('late')), 3000);
      call.on('cancelled', () => clearTimeout(t));
    },
    Unavailable: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => {
      unavailableCalls++;
      if (unavailableCalls % 2 === 1) cb({ code: grpc.status.UNAVAILABLE, details: 'try again' });
      else cb(null, Buffer.from('second time'));
    },
    // A message, then UNAVAILABLE: the status travels in the trailers (not Trailers-Only).
    StreamThenUnavailable: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      call.write(Buffer.from('partial'));
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'shutting down' });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  ca = new TestCa('gRPC test CA');
  const cert = ca.server();
  gw = await startInProcess(
    baseConfig({
      listeners: [
        { name: 'main', address: '127.0.0.1:0', protocol: 'http' },
        { name: 'tls', address: '127.0.0.1:0', protocol: 'https', tls: { cert: cert.cert, key: cert.key } },
      ],
      routes: [
        {
          name: 'retrying',
          match: { path: { prefix: '/meridian.test.Echo/Unavailable' } },
          cluster: 'grpc',
          retry: { attempts: 2, on: ['unavailable'], backoff: { base: '10ms', max: '20ms' } },
        },
        {
          name: 'outlier',
          match: { path: { prefix: '/meridian.test.Echo/StreamThenUnavailable' } },
          cluster: 'grpc-outlier',
        },
        { name: 'grpc', match: { path: { prefix: '/meridian.test.Echo/' } }, cluster: 'grpc', timeout: '60s' },
      ],
      clusters: [
        { name: 'grpc', protocol: 'http2', endpoints: [{ address: `127.0.0.1:${port}` }] },
        // The same server as a cluster of its own, judged by outlier detection.
        {
          name: 'grpc-outlier',
          protocol: 'http2',
          endpoints: [{ address: `127.0.0.1:${port}` }],
          outlierDetection: { consecutive5xx: 3, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 100 },
        },
      ],
    }),
  );
  tlsAddress = gw.gw.addresses.listeners.tls;
});

afterAll(async () => {
  await gw?.stop();
  server?.forceShutdown();
});

describe('gRPC statuses drive retries and outlier detection', () => {
  let c: Client;
  beforeAll(() => {
    c = new EchoClient(gw.url.replace('http://', ''), grpc.credentials.createInsecure()) as Client;
  });
  afterAll(() => c?.close());

  it('retry.on: [unavailable] retries a Trailers-Only UNAVAILABLE answer', async () => {
    const before = unavailableCalls;
    const r = await unary(c, 'Unavailable', Buffer.from('x'));
    expect(r.err).toBeUndefined();
    expect(r.res!.toString()).toBe('second time');
    expect(unavailableCalls - before).toBe(2);
  });

  it('UNAVAILABLE in the trailers of an HTTP 200 counts as a 5xx: three calls eject the endpoint', async () => {
    for (let i = 0; i < 3; i++) {
      const { got, status } = await readStream(
        c.StreamThenUnavailable(Buffer.from('x')) as grpc.ClientReadableStream<Buffer>,
      );
      expect(got).toEqual(['partial']);
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(status.details).toBe('shutting down');
    }
    // Outcomes reach the detector in batches: wait for the verdict.
    const ejected = await waitFor(async () => {
      const s = (await (await fetch(`${gw.admin}/clusters/grpc-outlier/status`)).json()) as {
        endpoints: Array<{ outlier?: { ejected: boolean } }>;
      };
      return s.endpoints[0].outlier?.ejected || undefined;
    });
    expect(ejected).toBe(true);
  });
});

const clients: Array<[string, () => Client]> = [
  ['h2c listener', () => new EchoClient(gw.url.replace('http://', ''), grpc.credentials.createInsecure()) as Client],
  [
    'TLS listener',
    () =>
      new EchoClient(
        tlsAddress.replace('127.0.0.1', 'localhost'),
        grpc.credentials.createSsl(Buffer.from(ca.certPem)),
      ) as Client,
  ],
];

/** Every message of a server stream, then its final status (an error status is not thrown). */
function readStream(call: grpc.ClientReadableStream<Buffer>): Promise<{ got: string[]; status: grpc.StatusObject }> {
  const got: string[] = [];
  return new Promise((resolve) => {
    call.on('data', (m: Buffer) => got.push(m.toString()));
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => resolve({ got, status }));
  });
}

function unary(
  c: Client,
  name: string,
  req: Buffer,
  opts: grpc.CallOptions = {},
): Promise<{ res?: Buffer; err?: grpc.ServiceError; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = c[name](req, new grpc.Metadata(), opts, (err: grpc.ServiceError | null, res?: Buffer) => {
      // The callback can run before the 'status' event: let it arrive.
      setImmediate(() => resolve({ res, err: err ?? undefined, trailers }));
    }) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

describe.each(clients)('gRPC through the gateway (%s)', (_name, makeClient) => {
  let c: Client;
  beforeAll(() => {
    c = makeClient();
  });
  afterAll(() => c?.close());

  it('unary call: response and trailing metadata', async () => {
    const r = await unary(c, 'Unary', Buffer.from('hello'));
    expect(r.err).toBeUndefined();
    expect(r.res!.toString()).toBe('echo:hello');
    expect(r.trailers!.get('x-echo-trailer')).toEqual(['bye']);
  });

  it('server streaming: 1,000 messages then OK', async () => {
    const { got, status } = await readStream(c.ServerStream(Buffer.from('1000')) as grpc.ClientReadableStream<Buffer>);
    expect(status.code).toBe(grpc.status.OK);
    expect(got).toHaveLength(1000);
    expect(got[999]).toBe('message 999');
  });

  it('a 4 MB message both ways', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 - 100, 0x61);
    const r = await unary(c, 'Unary', big);
    expect(r.err).toBeUndefined();
    expect(r.res!.length).toBe(big.length + 5);
    expect(r.res!.subarray(5).equals(big)).toBe(true);
  });

  it('an error status keeps its code, message and trailing metadata', async () => {
    const r = await unary(c, 'Fail', Buffer.from('x'));
    expect(r.err!.code).toBe(grpc.status.NOT_FOUND);
    expect(r.err!.details).toBe('widget 42 not found');
    expect(r.err!.metadata.get('x-reason')).toEqual(['no such widget']);
    expect(r.err!.metadata.get('detail-bin')).toEqual([Buffer.from([0, 1, 2, 255])]);
  });

  it('a deadline ends the call with DEADLINE_EXCEEDED', async () => {
    const started = Date.now();
    const r = await unary(c, 'Slow', Buffer.from('x'), { deadline: Date.now() + 300 });
    expect(r.err!.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('50 concurrent calls all succeed', async () => {
    const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => unary(c, 'Unary', Buffer.from(`n${i}`))));
    rs.forEach((r, i) => {
      expect(r.err).toBeUndefined();
      expect(r.res!.toString()).toBe(`echo:n${i}`);
    });
  });
});

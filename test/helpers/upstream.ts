import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a test upstream saw of one request. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

export interface TestUpstream {
  address: string;
  port: number;
  requests: SeenRequest[];
  server: http.Server;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** Default handler: 200 with a small JSON body naming the upstream and echoing the path. */
export const okHandler =
  (name: string): UpstreamHandler =>
  (req, res) => {
    const body = JSON.stringify({ upstream: name, path: req.url });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-upstream': name,
    });
    res.end(body);
  };

/**
 * A real HTTP/1.1 upstream on 127.0.0.1:0 that records every request. The handler gets the
 * whole body unless `stream` is set (then it gets an empty buffer and must consume req itself).
 */
export async function startUpstream(
  handler: UpstreamHandler = okHandler('up'),
  opts: { stream?: boolean } = {},
): Promise<TestUpstream> {
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    const seen: SeenRequest = {
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: 0,
    };
    requests.push(seen);
    if (opts.stream) return handler(req, res, Buffer.alloc(0));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      seen.bodyBytes += c.length;
      chunks.push(c);
    });
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    requests,
    server,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A port that refuses connections (bound, then closed). */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

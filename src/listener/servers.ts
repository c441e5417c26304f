import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Config, ListenerConfig } from '../config/schema/index.js';
import { msOf } from '../config/duration.js';
import type { TlsContexts } from './tls-context.js';
import type { SniResolver } from './passthrough-server.js';
import type { DownstreamRequest, DownstreamResponse } from './downstream.js';

type Limits = Config['gateway']['limits'];

/** Callbacks a server delivers to the data plane. */
export interface ServerHandlers {
  request(req: DownstreamRequest, res: DownstreamResponse): void;
  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  /** tls-passthrough listeners: where to send a connection for an SNI name. */
  resolveSni: SniResolver;
}

const H2_PREFACE = 'PRI * HTTP/2.0';

/** Parser errors -> status, reason phrase, catalogue code (the connection is always closed). */
const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'headers_too_large'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Payload Too Large', 'payload_too_large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'request_timeout'],
  default: [400, 'Bad Request', 'bad_request'],
};

/** How often Node's HTTP/1 servers look for connections past headersTimeout / requestTimeout. */
const TIMEOUT_CHECK_MS = 250;

/**
 * HTTP/1 header and request timeouts as Node's servers take them. Node enforces them (slowloris: 408)
 * on a timer it starts when a server emits 'listening' and runs every connectionsCheckingInterval.
 */
function h1Timeouts(limits: Limits) {
  const ms = msOf(limits);
  return {
    requestTimeout: ms.requestTimeout,
    headersTimeout: ms.headersTimeout,
    connectionsCheckingInterval: TIMEOUT_CHECK_MS,
  };
}

/** Options shared by every HTTP/1 server: limits as configured, Node's strict parser (never insecure). */
function h1Options(limits: Limits): http.ServerOptions {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    ...h1Timeouts(limits),
    keepAliveTimeout: msOf(limits).keepAliveTimeout,
    insecureHTTPParser: false,
    requireHostHeader: true,
    noDelay: true,
  };
}

function h2Settings(limits: Limits): http2.Settings {
  return {
    maxConcurrentStreams: limits.maxConcurrentStreams,
    initialWindowSize: 65535,
    maxHeaderListSize: limits.maxHeaderBytes,
  };
}

/**
 * Plain listener: HTTP/1.1, plus HTTP/2 with prior knowledge (h2c) detected from the connection
 * preface, so one port serves both without Upgrade: h2c (which is refused).
 */
export function createPlainServer(cfg: ListenerConfig, limits: Limits, handlers: ServerHandlers): net.Server {
  const h1 = http.createServer(h1Options(limits), handlers.request);
  configureH1(h1, limits, handlers);
  if (!cfg.h2c) return h1;
  // The outer server hands this one its connections and it never listens: start Node's timeout timer.
  h1.emit('listening');
  const h2 = http2.createServer({ settings: h2Settings(limits), maxSessionMemory: 10 }, handlers.request);
  const ms = msOf(limits);
  h2.on('session', onH2Session(ms.headersTimeout));
  const idle = ms.idleTimeout;
  const sniffTimeout = ms.headersTimeout;
  const server = net.createServer({ noDelay: true }, (socket) => {
    sniffPreface(socket, sniffTimeout, (isH2) => {
      const target = isH2 ? h2 : h1;
      if (isH2) socket.setTimeout(idle, () => socket.destroy());
      target.emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  server.on('close', () => {
    h1.close();
    h2.close();
  });
  // Let drain reach the inner servers: idle HTTP/1 keep-alive connections and HTTP/2 sessions.
  Object.assign(server, { inner: h1, h2 });
  return server;
}

/**
 * Decide h2c vs HTTP/1 from the first bytes. They may arrive in pieces: wait while they are still a
 * prefix of the h2 preface (bounded by the header timeout), then hand the socket over with the
 * bytes put back.
 */
function sniffPreface(socket: net.Socket, timeoutMs: number, decide: (isH2: boolean) => void) {
  let seen: Buffer | undefined;
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer) => {
    seen = seen ? Buffer.concat([seen, chunk]) : chunk;
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isPrefix = seen.toString('latin1', 0, n) === H2_PREFACE.slice(0, n);
    if (isPrefix && n < H2_PREFACE.length) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    socket.unshift(seen);
    decide(isPrefix);
  };
  socket.on('data', onData);
  socket.once('close', () => clearTimeout(timer));
}

/**
 * Streams keep Envoy's 64 KiB initial window (SETTINGS), but the connection window is raised to
 * Envoy's edge value of 1 MiB: left at the protocol default of 64 KiB, all streams of a session
 * would share 64 KiB of upload in flight.
 */
const H2_CONNECTION_WINDOW = 1024 * 1024;

function widenConnectionWindow(session: http2.ServerHttp2Session) {
  try {
    session.setLocalWindowSize(H2_CONNECTION_WINDOW);
  } catch {
    // The session was destroyed before it was set up; nothing to widen.
  }
}

/**
 * HTTP/2's slowloris: Node's headersTimeout covers HTTP/1 only, and a header block left unfinished
 * stalls the whole connection until the idle timeout. A session must complete its first request's
 * headers within headersTimeout, as an HTTP/1 connection must, or it is closed.
 */
function onH2Session(headersTimeoutMs: number): (session: http2.ServerHttp2Session) => void {
  return (session) => {
    widenConnectionWindow(session);
    const timer = setTimeout(() => session.destroy(), headersTimeoutMs);
    timer.unref();
    session.once('stream', () => clearTimeout(timer));
    session.once('close', () => clearTimeout(timer));
    watchPrematureResets(session);
  };
}

/** Envoy's premature-reset defaults: judged after this many streams, a reset within this lifetime counts. */
const PREMATURE_RESET_MIN_STREAMS = 500;
const PREMATURE_RESET_LIFETIME_MS = 1000;

/**
 * Rapid reset (CVE-2023-44487), as Envoy handles it: once a session has opened 500 streams, if at
 * least half of them were reset by the client within a second of opening, the connection is closed
 * (GOAWAY ENHANCE_YOUR_CALM, then the socket). nghttp2's own limit only sends GOAWAY and leaves the
 * TCP connection to the client.
 */
function watchPrematureResets(session: http2.ServerHttp2Session): void {
  let streams = 0;
  let premature = 0;
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    streams++;
    const opened = performance.now();
    stream.once('close', () => {
      if (
        stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR &&
        !stream.headersSent &&
        performance.now() - opened < PREMATURE_RESET_LIFETIME_MS
      )
        premature++;
      if (streams < PREMATURE_RESET_MIN_STREAMS || premature * 2 < streams || session.destroyed) return;
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      session.destroy();
    });
  });
}

/** CONNECT is never honoured: the gateway is not a forward proxy. */
function refuseConnect(_req: http.IncomingMessage, socket: Duplex) {
  socket.on('error', () => socket.destroy());
  socket.end(
    'HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\nx-meridian-error: method_not_allowed\r\n\r\n',
  );
}

function configureH1(server: http.Server, limits: Limits, handlers: ServerHandlers) {
  server.maxHeadersCount = limits.maxHeaders + 1;
  server.on('upgrade', handlers.upgrade);
  server.on('connect', refuseConnect);
  server.on('clientError', answerClientError);
}

/** An HTTP/1 request Node's parser refused (or timed out): status and error code from the catalogue, then close. */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex) {
  if (!socket.writable) return socket.destroy();
  const [status, reason, code] = CLIENT_ERRORS[err.code ?? ''] ?? CLIENT_ERRORS.default;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\nx-meridian-error: ${code}\r\n\r\n`,
  );
}

/**
 * TLS listener: HTTP/2 and HTTP/1.1 by ALPN, optional client certificates (mTLS). Certificates come
 * from `contexts` (SNI, hot reload); connections failing the post-handshake identity checks are
 * closed before any request is read. Client-initiated renegotiation is disabled.
 */
export function createTlsServer(
  limits: Limits,
  handlers: ServerHandlers,
  contexts: TlsContexts,
): http2.Http2SecureServer {
  const server = http2.createSecureServer(
    {
      ...contexts.serverOptions(),
      allowHTTP1: true,
      settings: h2Settings(limits),
      maxSessionMemory: 10,
      ...h1Options(limits),
    } as http2.SecureServerOptions,
    handlers.request,
  );
  // http2's HTTP/1 fallback ignores the timeouts given at creation (60 s, 300 s, checked every 30 s).
  Object.assign(server, h1Timeouts(limits));
  server.on('session', onH2Session(msOf(limits).headersTimeout));
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.disableRenegotiation();
    const reason = contexts.refuseReason(socket);
    if (reason) {
      contexts.countRefusal(reason);
      socket.destroy();
    } else contexts.accepted(socket);
  });
  server.on('upgrade', handlers.upgrade);
  server.on('connect', refuseConnect);
  // HTTP/1 over TLS: parser errors and header timeouts answered like on a plain listener.
  server.on('clientError', answerClientError);
  server.setTimeout(msOf(limits).idleTimeout);
  contexts.watch((opts) => server.setSecureContext(opts));
  server.once('close', () => contexts.close());
  return server;
}

import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { Dispatcher, errors } from 'undici';
import { formatAddress } from '../common/address.js';

const { NGHTTP2_CANCEL } = http2.constants;

/** Connection-specific fields an HTTP/2 request must not carry (RFC 9113 §8.2.2); `host` becomes `:authority`. */
const NOT_IN_H2 = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

/** Per-stream receive window: how much of one response may sit unread while the client is slow. */
const STREAM_WINDOW = 1 << 20;
/** Connection receive window, shared by the session's streams. */
const SESSION_WINDOW = 8 << 20;
/**
 * An idle or retired session's connection is closed gracefully (FIN); a peer that leaves its side open is cut
 * after this long, as Envoy's delayed_close_timeout (1 s) does. Node's own HTTP/2 server, after it sent
 * GOAWAY, never closes its side: without the cut every GOAWAY would leave a connection behind.
 */
const DELAYED_CLOSE_MS = 1000;

export interface H2OriginOptions {
  host: string;
  port: number;
  /** TLS origination (ALPN h2 is required of the peer); plain h2c with prior knowledge when absent. */
  tls?: tls.ConnectionOptions;
  connectTimeoutMs: number;
  /** Close the session after this long without a stream. */
  keepAliveTimeoutMs: number;
}

type Handler = Dispatcher.DispatchHandler;

/**
 * An HTTP/2 upstream endpoint behind undici's dispatch contract (the legacy handler calls the
 * forwarder's Attempt and undici's own `request()` both use), on one multiplexed node:http2 session.
 *
 * Why not undici's own HTTP/2 client (`allowH2`): in undici 7 its 'trailers' listener removes the
 * stream's 'data' listeners and completes the request at once, so response bytes still buffered in
 * a stream paused by backpressure are dropped. Every large gRPC response through a slow client lost
 * its tail (undici 8 waits for 'end', but needs Node 22.19). Here a response completes on 'end',
 * after every byte, with the trailers kept from the 'trailers' event.
 *
 * One session per endpoint, as Envoy's HTTP/2 pool by default: requests beyond the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS wait in nghttp2's queue. A session that received GOAWAY, or closed,
 * takes no new streams; the next request opens a new one. Upgrades are refused (no HTTP/2 upgrade).
 */
export class H2Origin extends Dispatcher {
  readonly #o: H2OriginOptions;
  readonly #authority: string;
  readonly #scheme: 'http' | 'https';
  #session: Session | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #sessions = new Set<Session>();

  constructor(o: H2OriginOptions) {
    super();
    this.#o = o;
    this.#scheme = o.tls ? 'https' : 'http';
    this.#authority = formatAddress(o.host, o.port);
  }

  dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    if (this.#closed) {
      handler.onError!(new errors.ClientClosedError());
      return false;
    }
    if (opts.upgrade) {
      handler.onError!(new errors.NotSupportedError('Upgrade is not supported over HTTP/2'));
      return false;
    }
    let s = this.#session;
    if (!s?.usable) s = this.#session = this.#open();
    s.start(new Exchange(s, opts, handler, this.#scheme, this.#authority));
    return true;
  }

  close(): Promise<void>;
  close(cb: () => void): void;
  close(cb?: () => void): Promise<void> | void {
    this.#closed = true;
    this.#closing ??= Promise.all([...this.#sessions].map((s) => s.close())).then(() => undefined);
    if (cb) void this.#closing.then(cb);
    else return this.#closing;
  }

  destroy(): Promise<void>;
  destroy(err: Error | null): Promise<void>;
  destroy(cb: () => void): void;
  destroy(err: Error | null, cb: () => void): void;
  destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    this.#closed = true;
    const err = typeof a === 'function' ? undefined : (a ?? undefined);
    for (const s of this.#sessions) s.destroy(err ?? new errors.ClientDestroyedError());
    const cb = typeof a === 'function' ? a : b;
    if (cb) queueMicrotask(cb);
    else return Promise.resolve();
  }

  #open(): Session {
    const s: Session = new Session(
      this.#o,
      this.#scheme,
      this.#authority,
      () => {
        if (this.#session === s) this.#session = undefined;
      },
      () => this.#sessions.delete(s),
    );
    this.#sessions.add(s);
    return s;
  }
}

/** One connection to the endpoint and the exchanges running on it. */
class Session {
  readonly #session: http2.ClientHttp2Session;
  readonly #socket: net.Socket;
  readonly #o: H2OriginOptions;
  readonly #exchanges = new Set<Exchange>();
  #connected = false;
  #goaway = false;
  #error: Error | undefined;
  #idle: NodeJS.Timeout | undefined;
  #connectTimer: NodeJS.Timeout | undefined;

  /** `onRetire`: the session takes no new streams (GOAWAY or closed); `onClose`: it is gone. */
  constructor(o: H2OriginOptions, scheme: string, authority: string, onRetire: () => void, onClose: () => void) {
    this.#o = o;
    const socket = o.tls
      ? tls.connect({
          host: o.host,
          port: o.port,
          ...o.tls,
          servername: o.tls.servername ?? (net.isIP(o.host) ? undefined : o.host),
          ALPNProtocols: ['h2'],
        })
      : net.connect({ host: o.host, port: o.port });
    socket.setNoDelay(true);
    this.#socket = socket;
    const session = (this.#session = http2.connect(`${scheme}://${authority}`, {
      createConnection: () => socket,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
    }));
    if (o.connectTimeoutMs > 0) {
      this.#connectTimer = setTimeout(() => session.destroy(new errors.ConnectTimeoutError()), o.connectTimeoutMs);
    }
    session.once('connect', () => {
      clearTimeout(this.#connectTimer);
      if (o.tls && (socket as tls.TLSSocket).alpnProtocol !== 'h2') {
        return session.destroy(new errors.InformationalError('upstream did not negotiate HTTP/2 (ALPN h2)'));
      }
      this.#connected = true;
      session.setLocalWindowSize(SESSION_WINDOW);
      for (const x of this.#exchanges) x.connected();
    });
    session.on('error', (err) => (this.#error ??= err));
    session.on('goaway', () => {
      this.#goaway = true;
      onRetire();
      // Node starts a graceful close of its own on GOAWAY; with nothing in flight, finish it now.
      if (this.#exchanges.size === 0) this.#closeIdle();
    });
    session.once('close', () => {
      clearTimeout(this.#connectTimer);
      clearTimeout(this.#idle);
      this.#goaway = true;
      onRetire();
      onClose();
      // Streams the session took with it, without an 'error' of their own.
      const err = this.#error ?? new errors.SocketError('HTTP/2 session closed');
      for (const x of this.#exchanges) x.fail(err);
    });
  }

  get usable(): boolean {
    return !this.#goaway && !this.#session.closed && !this.#session.destroyed;
  }

  start(x: Exchange): void {
    clearTimeout(this.#idle);
    this.#exchanges.add(x);
    x.send(this.#session);
    if (this.#connected) x.connected();
  }

  /** An exchange ended: with no stream left, the session lives on for keepAliveTimeout. */
  done(x: Exchange): void {
    this.#exchanges.delete(x);
    if (this.#exchanges.size > 0) return;
    // A retired session has nothing more to carry.
    if (!this.usable) return this.#closeIdle();
    clearTimeout(this.#idle);
    if (this.#o.keepAliveTimeoutMs > 0) {
      this.#idle = setTimeout(() => this.#closeIdle(), this.#o.keepAliveTimeoutMs);
      this.#idle.unref();
    }
  }

  /** Close a session with nothing in flight (retired or idle); cut its connection if the peer keeps its side open. */
  #closeIdle(): void {
    clearTimeout(this.#idle); // a GOAWAY may come while the keep-alive timer runs: close once
    this.#session.close();
    setTimeout(() => this.#socket.destroy(), DELAYED_CLOSE_MS).unref();
  }

  close(): Promise<void> {
    clearTimeout(this.#idle);
    if (this.#session.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.#session.close(resolve));
  }

  destroy(err: Error): void {
    this.#session.destroy(err);
  }
}

/** One request and its response on a session: drives the handler's legacy callbacks exactly once each. */
class Exchange {
  readonly #session: Session;
  readonly #opts: Dispatcher.DispatchOptions;
  readonly #handler: Handler;
  readonly #headers: http2.OutgoingHttpHeaders;
  #stream: http2.ClientHttp2Stream | undefined;
  #trailers: string[] | undefined;
  #responded = false;
  #connected = false;
  #done = false;

  constructor(session: Session, opts: Dispatcher.DispatchOptions, handler: Handler, scheme: string, authority: string) {
    this.#session = session;
    this.#opts = opts;
    this.#handler = handler;
    this.#headers = requestHeaders(opts, scheme, authority);
  }

  send(session: http2.ClientHttp2Session): void {
    const body = this.#opts.body;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.#stream = session.request(this.#headers, { endStream: body == null });
    } catch (err) {
      return this.fail(err as Error);
    }
    const headersTimeout = this.#opts.headersTimeout ?? 0;
    if (headersTimeout > 0) stream.setTimeout(headersTimeout, () => this.#timeout());
    stream.on('response', (headers) => this.#response(headers));
    stream.on('data', (chunk: Buffer) => {
      if (!this.#done && this.#handler.onData!(chunk) === false) stream.pause();
    });
    stream.on('trailers', (t) => (this.#trailers = flatHeaders(t)));
    stream.once('end', () => this.#complete());
    stream.once('error', (err) => this.fail(err));
    stream.once('close', () => {
      if (!this.#done)
        this.fail(new errors.SocketError(`HTTP/2 stream closed before the response ended (code ${stream.rstCode})`));
    });
    if (body != null) this.#writeBody(stream, body);
  }

  /** The session is up: the request has left the pending queue (undici's onConnect). */
  connected(): void {
    if (this.#connected || this.#done) return;
    this.#connected = true;
    this.#handler.onConnect!((err) => this.#abort(err));
  }

  fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#stream?.close(NGHTTP2_CANCEL);
    this.#session.done(this);
    this.#handler.onError!(err);
  }

  #abort(err?: Error): void {
    this.fail(err ?? new errors.RequestAbortedError());
  }

  #timeout(): void {
    this.fail(this.#responded ? new errors.BodyTimeoutError() : new errors.HeadersTimeoutError());
  }

  #response(headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void {
    if (this.#done) return;
    this.#responded = true;
    const stream = this.#stream!;
    const bodyTimeout = this.#opts.bodyTimeout ?? 0;
    stream.setTimeout(bodyTimeout, bodyTimeout > 0 ? () => this.#timeout() : undefined);
    const resume = () => stream.resume();
    if (
      this.#handler.onHeaders!(headers[':status'] ?? 0, flatHeaders(headers) as unknown as Buffer[], resume, '') ===
      false
    )
      stream.pause();
  }

  #complete(): void {
    if (this.#done) return;
    if (!this.#responded) return this.fail(new errors.SocketError('HTTP/2 stream ended without a response'));
    this.#done = true;
    this.#stream!.setTimeout(0);
    this.#session.done(this);
    this.#handler.onComplete!(this.#trailers ?? []);
  }

  #writeBody(stream: http2.ClientHttp2Stream, body: NonNullable<Dispatcher.DispatchOptions['body']>): void {
    if (typeof body === 'string' || body instanceof Uint8Array) {
      stream.end(body);
      return;
    }
    const src = body as Readable;
    if (typeof src.pipe !== 'function')
      return this.fail(new errors.NotSupportedError('request body must be a string, buffer or readable stream'));
    src.on('error', (err) => this.fail(err));
    src.pipe(stream);
  }
}

/** undici's dispatch headers (flat list or object) as an HTTP/2 header block. */
function requestHeaders(
  opts: Dispatcher.DispatchOptions,
  scheme: string,
  authority: string,
): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = Object.create(null);
  out[':method'] = opts.method;
  out[':path'] = opts.path;
  out[':scheme'] = scheme;
  out[':authority'] = authority;
  const add = (name: string, value: string | string[] | number | undefined) => {
    if (value === undefined) return;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      out[':authority'] = String(value);
      return;
    }
    if (NOT_IN_H2.has(lower)) return;
    if (lower === 'te' && String(value).trim().toLowerCase() !== 'trailers') return;
    const prev = out[lower];
    if (prev === undefined) out[lower] = Array.isArray(value) ? value : String(value);
    else out[lower] = ([] as string[]).concat(prev as string | string[], Array.isArray(value) ? value : String(value));
  };
  const h = opts.headers;
  if (Array.isArray(h)) for (let i = 0; i < h.length; i += 2) add(String(h[i]), h[i + 1] as string | string[]);
  else if (h) for (const [k, v] of Object.entries(h as Record<string, string | string[] | undefined>)) add(k, v);
  return out;
}

/** Node's HTTP/2 header object as undici's flat raw list (pseudo-headers dropped, repeats kept). */
function flatHeaders(h: http2.IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const name of Object.keys(h)) {
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    const v = h[name];
    if (Array.isArray(v)) for (const one of v) out.push(name, one);
    else if (v !== undefined) out.push(name, v);
  }
  return out;
}

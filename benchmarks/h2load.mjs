// A bounded HTTP/2 load generator on node:http2, for machines without h2load (nghttp2-client).
// C sessions, each keeping S streams in flight, for D seconds; GET only, responses read and dropped.
// Latencies go into a preallocated log-linear histogram (Float64Array, ~0.1 % resolution), so the
// measuring itself allocates nothing per request beyond what node:http2 does.
//
// CLI:  node h2load.mjs [-c C] [-m S] [-d D] [-H 'name: value']... URL     (prints one JSON object)
//   https URLs negotiate h2 by ALPN (certificates are not verified: benchmarks use self-signed ones);
//   http URLs use h2c with prior knowledge.
// Module: import { h2load } from './h2load.mjs'; await h2load({ url, connections, streams, duration }).
//
// Result: { rps, total, p50, p90, p99, max (ms), errors, non2xx, streamErrors, sessionErrors,
//           reconnects, inflightAtEnd, duration }. Only responses completed inside the window count
//           towards rps and latency; errors are counted whenever they happen (also during the drain).
import http2 from 'node:http2';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// Histogram: values in microseconds. 0..2047 exact; above, 1024 sub-buckets per power of two.

const SUB_BITS = 10;
const SUB = 1 << SUB_BITS;
const MAX_US = 2 ** 31 - 1;
const BUCKETS = 22 * SUB; // enough for MAX_US (~35 min)

export function createHistogram() {
  return { counts: new Float64Array(BUCKETS), n: 0, max: 0 };
}

function bucketOf(us) {
  const v = us < 0 ? 0 : us > MAX_US ? MAX_US : us | 0;
  if (v < 2 * SUB) return v;
  const shift = 31 - Math.clz32(v) - SUB_BITS;
  return (shift + 1) * SUB + (v >>> shift) - SUB;
}

/** Midpoint of a bucket, in microseconds. */
function valueOf(i) {
  if (i < 2 * SUB) return i;
  const shift = Math.floor(i / SUB) - 1;
  const low = (i - shift * SUB) * 2 ** shift;
  return low + (2 ** shift - 1) / 2;
}

export function record(h, us) {
  h.counts[bucketOf(us)]++;
  h.n++;
  if (us > h.max) h.max = us;
}

/** q in [0, 1] -> microseconds (0 when empty). */
export function percentile(h, q) {
  if (h.n === 0) return 0;
  const target = Math.max(1, Math.ceil(q * h.n));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += h.counts[i];
    if (seen >= target) return Math.min(valueOf(i), h.max);
  }
  return h.max;
}

// ---------------------------------------------------------------------------------------------
// Load

const noop = () => {};

/**
 * opts: { url, connections = 10, streams = 10, duration = 10 (s), headers = {}, drainMs = 2000 }.
 * Resolves after the window plus at most drainMs (in-flight streams are then destroyed).
 */
export function h2load({ url, connections = 10, streams = 10, duration = 10, headers = {}, drainMs = 2000 }) {
  const u = new URL(url);
  const tls = u.protocol === 'https:';
  const reqHeaders = {
    ':method': 'GET',
    ':path': u.pathname + u.search,
    ':scheme': tls ? 'https' : 'http',
    ':authority': u.host,
  };
  for (const [k, v] of Object.entries(headers)) reqHeaders[k.toLowerCase()] = v;
  const connectOpts = tls
    ? {
        rejectUnauthorized: false,
        ALPNProtocols: ['h2'],
        servername: u.hostname === '127.0.0.1' ? 'localhost' : u.hostname,
      }
    : {};

  const hist = createHistogram();
  const c = { total: 0, non2xx: 0, streamErrors: 0, sessionErrors: 0, reconnects: 0, inflight: 0 };
  const sessions = new Set();
  let running = true;
  let start = 0;
  let end = 0;

  return new Promise((resolve) => {
    let finished = false;
    let drainTimer;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(drainTimer);
      const inflightAtEnd = c.inflight;
      for (const s of sessions) s.destroy();
      const ms = (us) => Math.round(us) / 1000;
      resolve({
        rps: c.total / duration,
        total: c.total,
        p50: ms(percentile(hist, 0.5)),
        p90: ms(percentile(hist, 0.9)),
        p99: ms(percentile(hist, 0.99)),
        max: ms(hist.max),
        errors: c.non2xx + c.streamErrors + c.sessionErrors,
        non2xx: c.non2xx,
        streamErrors: c.streamErrors,
        sessionErrors: c.sessionErrors,
        reconnects: c.reconnects,
        inflightAtEnd,
        duration,
      });
    };
    const maybeFinish = () => {
      if (!running && c.inflight === 0) finish();
    };

    /** One stream; on completion the slot issues the next one while the window is open. */
    function issue(session) {
      if (!running || session.closed || session.destroyed) return;
      const t0 = performance.now();
      let status = 0;
      let req;
      try {
        req = session.request(reqHeaders, { endStream: true });
      } catch {
        c.streamErrors++;
        return;
      }
      c.inflight++;
      req.on('response', (h) => {
        status = h[':status'];
      });
      req.on('data', noop);
      req.on('error', noop); // counted on close from rstCode / missing status
      req.on('close', () => {
        c.inflight--;
        const t1 = performance.now();
        if (status === 0 || req.rstCode !== http2.constants.NGHTTP2_NO_ERROR) c.streamErrors++;
        else if (status < 200 || status > 299) c.non2xx++;
        else if (t1 <= end) {
          c.total++;
          record(hist, (t1 - t0) * 1000);
        }
        if (running) issue(session);
        else maybeFinish();
      });
    }

    function connect() {
      const session = http2.connect(u.origin, connectOpts);
      sessions.add(session);
      session.on('error', () => {
        c.sessionErrors++;
      });
      session.on('close', () => {
        sessions.delete(session);
        if (running) {
          // The server went away (GOAWAY, reset): reconnect so the load stays at C x S.
          c.reconnects++;
          setTimeout(() => {
            if (running) connect();
          }, 10);
        }
      });
      session.once('connect', () => {
        for (let i = 0; i < streams; i++) issue(session);
      });
    }

    start = performance.now();
    end = start + duration * 1000;
    for (let i = 0; i < connections; i++) connect();
    setTimeout(() => {
      // No new streams; in-flight ones finish, then finish() destroys the sessions. (Closing the
      // sessions here would make nghttp2 refuse streams queued but not yet sent: not server errors.)
      running = false;
      if (c.inflight === 0) finish();
      else drainTimer = setTimeout(finish, drainMs);
    }, duration * 1000);
  });
}

// ---------------------------------------------------------------------------------------------
// CLI

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      connections: { type: 'string', short: 'c', default: '10' },
      streams: { type: 'string', short: 'm', default: '10' },
      duration: { type: 'string', short: 'd', default: '10' },
      header: { type: 'string', short: 'H', multiple: true, default: [] },
    },
  });
  if (positionals.length !== 1) {
    console.error(
      "usage: node h2load.mjs [-c sessions] [-m streams-per-session] [-d seconds] [-H 'name: value']... URL",
    );
    process.exit(2);
  }
  const headers = Object.fromEntries(
    values.header.map((h) => {
      const i = h.indexOf(':');
      return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
    }),
  );
  const duration = Number(values.duration);
  // Hard bound: the window, the drain, plus slack for connecting.
  setTimeout(
    () => {
      console.error('h2load.mjs: hard timeout');
      process.exit(1);
    },
    (duration + 15) * 1000,
  ).unref();
  const r = await h2load({
    url: positionals[0],
    connections: Number(values.connections),
    streams: Number(values.streams),
    duration,
    headers,
  });
  console.log(JSON.stringify(r));
  process.exit(0);
}

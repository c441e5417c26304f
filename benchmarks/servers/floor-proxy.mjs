// The "Node floor": node:http + undici Pool.dispatch, streaming, keep-alive, hop-by-hop stripping.
// About the least a correct Node reverse proxy can do per request.
import http from 'node:http';
import { Pool } from 'undici';

const port = Number(process.env.PORT ?? 18081);
const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:18090';
const pool = new Pool(upstream, { connections: 128, pipelining: 1 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

function strip(raw) {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toString();
    if (!HOP.has(k.toLowerCase())) out.push(k, raw[i + 1].toString());
  }
  return out;
}

http
  .createServer((req, res) => {
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    let done = false;
    pool.dispatch(
      { path: req.url, method: req.method, headers: strip(req.rawHeaders), body: hasBody ? req : null },
      {
        // A client that leaves mid-response must release the upstream connection, or a paused
        // response (res.write false, no 'drain' ever) holds it forever and the pool runs dry.
        onConnect(abort) {
          res.once('close', () => {
            if (!done) abort();
          });
        },
        onHeaders(status, raw, resume) {
          res.writeHead(status, strip(raw));
          res.on('drain', resume);
          return true;
        },
        onData(chunk) {
          return res.write(chunk);
        },
        onComplete() {
          done = true;
          res.end();
        },
        onError() {
          done = true;
          if (!res.headersSent) res.writeHead(502);
          res.end();
        },
      },
    );
  })
  .listen(port, '127.0.0.1', () => console.log(`floor proxy on ${port}`));

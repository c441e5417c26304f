// An OTLP/HTTP collector that accepts every export and keeps nothing: what the tracing scenarios send
// their spans to, so the gateway's cost of tracing is measured, not a collector's.
import http from 'node:http';

const port = Number(process.env.PORT ?? 18095);
http
  .createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`otlp sink listening on ${port}`));

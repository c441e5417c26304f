// The cheap upstream every target proxies to: 100-byte 200 responses.
// PORT (18090), or PORTS (comma list): one process serving several ports, so multi-endpoint scenarios
// get distinct endpoints without adding upstream processes (the upstream's CPU stays comparable).
import http from 'node:http';
const body = Buffer.alloc(100, 'x');
const ports = (process.env.PORTS ?? process.env.PORT ?? '18090').split(',').map(Number);
const handler = (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
};
await Promise.all(
  ports.map((port) => new Promise((resolve) => http.createServer(handler).listen(port, '127.0.0.1', resolve))),
);
console.log(`upstream on ${ports.join(',')}`);

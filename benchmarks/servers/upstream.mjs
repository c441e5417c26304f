// The cheap upstream every target proxies to: 100-byte 200 responses.
import http from 'node:http';
const body = Buffer.alloc(100, 'x');
const port = Number(process.env.PORT ?? 18090);
http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}).listen(port, '127.0.0.1', () => console.log(`upstream on ${port}`));

import { createServer, type Server } from 'node:http';
import { Agent, request } from 'undici';

/**
 * HTTP servers on several loopback addresses (127.0.0.2, 127.0.0.3, ...) sharing one port, each
 * answering with its own IP (after 800 ms for `/slow...`): endpoints that DNS records or EndpointSlices
 * can name by address alone. `requests` counts, per IP, the requests each one received (on arrival).
 * `close` ends them (register it for cleanup).
 */
export async function upstreamsOnOnePort(ips: readonly string[]): Promise<{
  port: number;
  connections: Record<string, number>;
  requests: Record<string, number>;
  close: () => Promise<void>;
}> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const servers: Server[] = [];
    const connections: Record<string, number> = {};
    const requests: Record<string, number> = {};
    let port = 0;
    try {
      for (const ip of ips) {
        // `/slow...` answers after 800 ms: a request still in flight while its endpoint changes.
        const s = createServer((req, res) => {
          requests[ip] = (requests[ip] ?? 0) + 1;
          if (req.url?.startsWith('/slow')) setTimeout(() => res.end(ip), 800);
          else res.end(ip);
        });
        s.on('connection', () => (connections[ip] = (connections[ip] ?? 0) + 1));
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.listen(port, ip, () => resolve());
        });
        servers.push(s);
        port = (s.address() as { port: number }).port;
      }
      const close = async () => {
        for (const s of servers) {
          s.closeAllConnections();
          await new Promise((r) => s.close(r));
        }
      };
      return { port, connections, requests, close };
    } catch {
      for (const s of servers) s.close();
    }
  }
  throw new Error('no port free on every loopback address');
}

/** Requests in a loop (4 at a time, at most 30 s) until stopped: which upstream answered each, and every failure. */
export function loadLoop(url: string, headers: Record<string, string> = {}) {
  const agent = new Agent({ connections: 4 });
  const seen: string[] = [];
  const failures: string[] = [];
  let on = true;
  const loops = Array.from({ length: 4 }, async () => {
    const end = Date.now() + 30_000;
    while (on && Date.now() < end) {
      try {
        const r = await request(url, { dispatcher: agent, headers });
        const text = await r.body.text();
        if (r.statusCode === 200) seen.push(text);
        else failures.push(`${r.statusCode} ${text}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  });
  return {
    seen,
    failures,
    /** What answered since `from` (an index into seen). */
    since: (from: number) => new Set(seen.slice(from)),
    stop: async () => {
      on = false;
      await Promise.all(loops);
      await agent.close();
    },
  };
}

// Shared by the scale benchmarks (endpoint-scale.mjs, kubernetes-scale.mjs): free ports, percentiles, and
// a load loop on one URL whose latencies and errors are filed under the phase current when each request
// ended, so a change's effect on unrelated traffic is read per phase.
import { createServer } from 'node:net';
import { Agent, request } from 'undici';

export const freePort = () =>
  new Promise((r) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => r(port));
    });
  });
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

/** `concurrency` loops of requests to `url` until stop(); `phase` names where the next samples go. */
export function phaseLoad(url, concurrency, phase) {
  const samples = new Map();
  let on = true;
  const agent = new Agent({ connections: concurrency });
  const loops = Array.from({ length: concurrency }, async () => {
    while (on) {
      const t0 = performance.now();
      let ok = false;
      try {
        const r = await request(url, { dispatcher: agent, headersTimeout: 30000, bodyTimeout: 30000 });
        await r.body.dump();
        ok = r.statusCode === 200;
      } catch {
        ok = false;
      }
      const s = samples.get(load.phase) ?? { lat: [], errors: 0 };
      s.lat.push(performance.now() - t0);
      if (!ok) s.errors++;
      samples.set(load.phase, s);
    }
  });
  const load = {
    phase,
    /** The latencies (ms) and errors of one phase. */
    of: (label) => samples.get(label) ?? { lat: [], errors: 0 },
    stop: async () => {
      on = false;
      await Promise.all(loops);
      await agent.close();
    },
  };
  return load;
}

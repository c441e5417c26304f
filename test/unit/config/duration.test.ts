import { describe, it, expect } from 'vitest';
import { validateConfig } from '../../../src/config/validate.js';
import { msOf, parseDuration } from '../../../src/config/duration.js';
import { packConfig, unpackConfig } from '../../../src/config/endpoint-delta.js';
import { configHash } from '../../../src/control/store/config-store.js';
import type { Config } from '../../../src/config/schema/index.js';

const input = {
  listeners: [{ name: 'main', address: '127.0.0.1:8080' }],
  clusters: [
    {
      name: 'app',
      connectTimeout: '250ms',
      endpoints: [{ address: '127.0.0.1:9000' }],
      healthCheck: { tcp: {}, interval: '2s' },
    },
  ],
  routes: [
    { name: 'api', match: {}, cluster: 'app', timeout: '1.5m', retry: { attempts: 2, backoff: { base: '10ms' } } },
  ],
  auth: {
    jwtProviders: [{ name: 'idp', issuer: 'https://idp.test', jwks: { uri: 'https://idp.test/jwks', cooldown: '1h' } }],
  },
};

function validated(): Config {
  const r = validateConfig(structuredClone(input), {});
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

describe('durations are parsed once, at validation, beside the document', () => {
  it('parses "250ms", "5s", "1.5m" and "1h" into milliseconds', () => {
    expect(['250ms', '5s', '1.5m', '1h'].map(parseDuration)).toEqual([250, 5000, 90_000, 3_600_000]);
  });

  it('gives every section its durations in ms, defaults included, an unset optional one undefined', () => {
    const c = validated();
    expect(msOf(c.routes[0])).toEqual({ timeout: 90_000 });
    expect(msOf(c.routes[0]).idleTimeout).toBeUndefined();
    expect(msOf(c.routes[0].retry!.backoff)).toEqual({ base: 10 });
    expect(msOf(c.clusters[0])).toEqual({ connectTimeout: 250, keepAliveTimeout: 4000 });
    expect(msOf(c.clusters[0].healthCheck!)).toEqual({ interval: 2000, timeout: 1000, jitter: 0 });
    expect(msOf(c.gateway).drainTimeout).toBe(30_000);
    const jwks = c.auth.jwtProviders[0].jwks;
    expect('uri' in jwks && msOf(jwks)).toEqual({ cacheDuration: 600_000, cooldown: 3_600_000, timeout: 5000 });
  });

  it('leaves the document as written: JSON, keys and the hash show "1.5m", never a number', () => {
    const c = validated();
    expect(JSON.parse(JSON.stringify(c)).routes[0].timeout).toBe('1.5m');
    expect(Object.keys(c.routes[0])).not.toContain('timeoutMs');
    expect(configHash(c)).toBe(configHash(JSON.parse(JSON.stringify(c)) as Config));
  });

  it('keeps them through a spread copy (an endpoint delta) and parses them again in a worker (IPC drops them)', () => {
    const c = validated();
    expect(msOf({ ...c.clusters[0], endpoints: [] }).connectTimeout).toBe(250);
    const received = unpackConfig(JSON.parse(JSON.stringify(packConfig(c))) as Config);
    expect(msOf(received.routes[0]).timeout).toBe(90_000);
    expect(msOf(received.clusters[0].healthCheck!).interval).toBe(2000);
  });

  it('parses a clone of a validated section on its first read', () => {
    const clone = structuredClone(validated().routes[0]);
    expect(msOf(clone).timeout).toBe(90_000);
    expect(msOf(clone)).toBe(msOf(clone));
  });
});

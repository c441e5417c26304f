import { describe, expect, it } from 'vitest';
import { generateKeyPair, exportJWK } from 'jose';
import { request } from 'undici';
import { redactQuery } from '../../src/observability/access-log.js';
import { spawnGateway, baseConfig, waitFor } from '../helpers/gateway.js';

describe('access log', () => {
  it('redacts the values of credential query parameters only', () => {
    const names = new Set(['access_token']);
    expect(redactQuery('/a?access_token=eyJ.x.y&keep=1', names)).toBe('/a?access_token=REDACTED&keep=1');
    expect(redactQuery('/a?keep=1&access%5Ftoken=t', names)).toBe('/a?keep=1&access%5Ftoken=REDACTED');
    expect(redactQuery('/a?keep=1', names)).toBe('/a?keep=1');
    expect(redactQuery('/a', names)).toBe('/a');
  });

  it('never writes a query-string token to the access log of a running gateway', async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const gw = await spawnGateway(
      baseConfig({
        gateway: { name: 'log', workers: 1 },
        auth: {
          jwtProviders: [
            {
              name: 'q',
              issuer: 'https://iss',
              audiences: ['api'],
              algorithms: ['ES256'],
              jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' }] },
              from: [{ query: 'access_token' }],
            },
          ],
        },
        routes: [{ name: 'r', match: { path: { prefix: '/' } }, directResponse: { status: 200 }, auth: ['q'] }],
      }),
    );
    try {
      const r = await request(`${gw.url}/x?access_token=secret.token.value&keep=1`);
      expect(r.statusCode).toBe(401);
      await r.body.dump();
      const line = await waitFor(() => gw.output.find((l) => l.includes('"type":"access"')), 5000);
      expect(line).toContain('access_token=REDACTED&keep=1');
      expect(gw.output.join('\n')).not.toContain('secret.token.value');
    } finally {
      await gw.stop();
    }
  });

  it('samples by gateway.accessLog.sampleRate, and writes nothing when disabled', async () => {
    const lines = async (accessLog: Record<string, unknown>, n: number) => {
      const gw = await spawnGateway(
        baseConfig({
          gateway: { name: 'sample', workers: 1, accessLog },
          routes: [{ name: 'r', match: { path: { prefix: '/' } }, directResponse: { status: 200 } }],
        }),
      );
      try {
        for (let i = 0; i < n; i++) await (await request(`${gw.url}/s`)).body.dump();
        // Log lines reach the test through the child's stdout pipe: every one is there once the gateway
        // has stopped (it flushes the log at exit) and the pipe has ended.
        const drained = new Promise((r) =>
          gw.proc.stdout!.readableEnded ? r(undefined) : gw.proc.stdout!.once('end', r),
        );
        await gw.stop();
        await drained;
        return gw.output.filter((l) => l.includes('"type":"access"') && l.includes('"path":"/s"')).length;
      } finally {
        await gw.stop();
      }
    };
    // 400 requests at 25 %: binomial mean 100, sd 8.7; the bounds are beyond 4 sd.
    const sampled = await lines({ enabled: true, sampleRate: 0.25 }, 400);
    expect(sampled).toBeGreaterThan(60);
    expect(sampled).toBeLessThan(140);
    expect(await lines({ enabled: false }, 50)).toBe(0);
    expect(await lines({ enabled: true, sampleRate: 1 }, 50)).toBe(50);
  }, 30_000);
});

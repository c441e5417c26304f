import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { spawnGateway, baseConfig, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { startRedis, type TestRedis } from '../helpers/redis-server.js';

let redis: TestRedis;
const replicas: SpawnedGateway[] = [];

function config(extraRoutes: unknown[] = []) {
  return baseConfig({
    gateway: { name: 'shared', workers: 1, accessLog: { enabled: false } },
    configStore: { url: redis.url, timeout: '300ms' },
    routes: [
      { name: 'base', match: { path: { exact: '/base' } }, directResponse: { status: 200, body: 'base' } },
      ...extraRoutes,
    ],
  });
}

const put = (gw: SpawnedGateway, name: string, body: string) =>
  request(`${gw.admin}/routes/${name}`, {
    method: 'PUT',
    body: JSON.stringify({ match: { path: { exact: `/${name}` } }, directResponse: { status: 200, body } }),
  });

async function serves(gw: SpawnedGateway, path: string, body: string) {
  const r = await request(`${gw.url}${path}`);
  return (await r.body.text()) === body;
}

describe('replicas sharing their config through Redis (no hub)', () => {
  beforeAll(async () => {
    redis = await startRedis();
    replicas.push(await spawnGateway(config()), await spawnGateway(config()));
  }, 30_000);
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await redis.stop();
  });

  it('a change through either replica reaches the other', async () => {
    const [a, b] = replicas as [SpawnedGateway, SpawnedGateway];
    expect([200, 201]).toContain((await put(a, 'from-a', 'A')).statusCode);
    await waitFor(() => serves(b, '/from-a', 'A'), 5000, 50);
    expect([200, 201]).toContain((await put(b, 'from-b', 'B')).statusCode);
    await waitFor(() => serves(a, '/from-b', 'B'), 5000, 50);
  });

  it('a replica started later from an older file adopts the shared config', async () => {
    const c = await spawnGateway(
      config([{ name: 'stale', match: { path: { exact: '/stale' } }, directResponse: { status: 200, body: 'old' } }]),
    );
    replicas.push(c);
    await waitFor(() => serves(c, '/from-b', 'B'), 5000, 50);
    expect((await request(`${c.url}/stale`)).statusCode).toBe(404);
  });

  it('concurrent writes on two replicas: each is stored or refused with 409, never lost silently, and replicas converge', async () => {
    const [a, b] = replicas as [SpawnedGateway, SpawnedGateway];
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => put(i % 2 ? b : a, `race-${i}`, String(i)).then((r) => r.statusCode)),
    );
    for (const s of results) expect([200, 201, 409]).toContain(s);
    const stored = results.map((s, i) => (s === 409 ? undefined : `race-${i}`)).filter(Boolean);
    expect(stored.length).toBeGreaterThan(0);
    const routesOf = async (gw: SpawnedGateway) =>
      ((await (await request(`${gw.admin}/config`)).body.json()) as { routes: Array<{ name: string }> }).routes.map(
        (r) => r.name,
      );
    const hasAll = async (gw: SpawnedGateway) => {
      const names = await routesOf(gw);
      return stored.every((n) => names.includes(n!));
    };
    // Converged: both hold every stored write and the same route list.
    await waitFor(
      async () =>
        (await hasAll(a)) &&
        (await hasAll(b)) &&
        JSON.stringify(await routesOf(a)) === JSON.stringify(await routesOf(b)),
      5000,
      50,
    );
  });

  it('Redis down: traffic keeps flowing, writes are refused with 503; after Redis returns (empty) it is re-seeded and writes flow again', async () => {
    const [a, b] = replicas as [SpawnedGateway, SpawnedGateway];
    await redis.kill();
    expect(await serves(a, '/from-b', 'B')).toBe(true);
    const refused = await put(a, 'during-outage', 'x');
    expect(refused.statusCode).toBe(503);
    expect(((await refused.body.json()) as { error: string }).error).toBe('store_unavailable');
    await redis.restart();
    await waitFor(
      async () => {
        const r = await put(a, 'after-outage', 'back');
        return [200, 201].includes(r.statusCode);
      },
      10000,
      200,
    );
    await waitFor(() => serves(b, '/after-outage', 'back'), 5000, 50);
    expect((await request(`${b.url}/from-a`)).statusCode).toBe(200);
  }, 30_000);
});

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import type { Browser, Page } from 'playwright-core';
import { HAS_CHROMIUM, openUiBrowser, survivesPolls } from '../helpers/browser.js';
import { baseConfig, REPO, spawnGateway, waitFor, type SpawnedGateway } from '../helpers/gateway.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

const TOKEN = 'ui-test-admin-token';
/** Screenshots land here (gitignored); docs/ui-gateway.png is a copy of one. */
const SCREENSHOTS = join(REPO, 'test-output', 'ui');
/** A cluster this big must still render as one table (1,000 endpoints nobody listens on). */
const BIG_CLUSTER_SIZE = 1000;

describe.skipIf(!HAS_CHROMIUM)('gateway UI in headless Chromium', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  let gw: SpawnedGateway;
  let good: TestUpstream[];
  let bad: TestUpstream;
  let browser: Browser;
  let page: Page;
  let consoleErrors: string[];
  const agent = new Agent();
  const hit = async (n: number) => {
    for (let i = 0; i < n; i++) await (await request(`${gw.url}/x`, { dispatcher: agent })).body.dump();
  };
  const admin = (path: string, init: { method?: 'PUT' | 'POST'; body?: string } = {}) =>
    request(`${gw.admin}${path}`, {
      method: init.method ?? 'GET',
      body: init.body,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    });

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    good = await Promise.all([startUpstream(), startUpstream()]);
    bad = await startUpstream((_req, res) => {
      res.writeHead(500);
      res.end('broken');
    });
    for (const u of [...good, bad]) cleanup.push(() => u.close());
    gw = await spawnGateway(
      baseConfig({
        admin: { address: '127.0.0.1:0', token: TOKEN },
        routes: [
          { name: 'api', match: { path: { prefix: '/' } }, cluster: 'app' },
          { name: 'health', match: { path: { exact: '/healthz' } }, directResponse: { status: 200, body: 'ok' } },
        ],
        clusters: [
          {
            name: 'app',
            endpoints: [
              { address: good[0].address, locality: { region: 'eu-west', zone: 'a' } },
              { address: good[1].address, locality: { region: 'eu-west', zone: 'b' } },
              { address: bad.address, locality: { region: 'eu-west', zone: 'c' } },
            ],
            outlierDetection: { consecutive5xx: 5, interval: '1s', baseEjectionTime: '120s', maxEjectionPercent: 50 },
          },
          {
            name: 'big',
            endpoints: Array.from({ length: BIG_CLUSTER_SIZE }, (_, i) => ({
              address: `127.0.${10 + Math.floor(i / 250)}.${1 + (i % 250)}:9`,
              priority: i < 800 ? 0 : 1,
              locality: { region: i < 800 ? 'eu-west' : 'us-east', zone: `z${i % 3}` },
            })),
          },
        ],
      }),
    );
    cleanup.push(() => gw.stop());
    ({ browser, page, consoleErrors } = await openUiBrowser(TOKEN, { width: 1280, height: 900 }));
    cleanup.push(() => browser.close());
  }, 60_000);

  afterAll(async () => {
    await agent.close();
    while (cleanup.length) await cleanup.pop()!().catch(() => {});
  });

  it('is behind the admin authentication and serves only its own files', async () => {
    const anonymous = await request(`${gw.admin}/ui/`);
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();
    const page = await admin('/ui/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(await page.body.text()).toContain('<script src="app.js"');
    const missing = await admin('/ui/server.js');
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
    const traversal = await admin('/ui/%2e%2e%2fserver.js');
    expect(traversal.statusCode).toBe(404);
    await traversal.body.dump();
    const write = await admin('/ui/', { method: 'POST' });
    expect(write.statusCode).toBe(405);
    await write.body.dump();
  });

  it('shows an endpoint ejected by outlier detection, and live rates', async () => {
    await waitFor(async () => {
      await hit(20);
      const s = (await (await admin('/clusters/app/status')).body.json()) as {
        endpoints: Array<{ address: string; outlier?: { ejected: boolean } }>;
      };
      return s.endpoints.find((e) => e.address === bad.address)?.outlier?.ejected;
    }, 15_000);
    // Traffic while the page polls, so the chart has a rate to draw.
    let trafficOn = true;
    const traffic = (async () => {
      while (trafficOn) await hit(10);
    })();
    try {
      await page.goto(`${gw.admin}/ui/?cluster=app`);
      const row = page.locator(`#endpoint-rows tr[data-address="${bad.address}"]`);
      await row.waitFor();
      await waitFor(async () => (await row.getAttribute('data-ejected')) === 'true', 10_000, 200);
      expect(await row.locator('td').nth(2).textContent()).toMatch(/^ejected/);
      expect(await row.getAttribute('data-health')).toBe('unhealthy');
      expect(await row.textContent()).toContain('failed_outlier_check');
      expect(await row.textContent()).toContain('eu-west / c');
      const healthy = page.locator(`#endpoint-rows tr[data-address="${good[0].address}"]`);
      expect(await healthy.getAttribute('data-ejected')).toBe('false');
      const summary = page.locator('#cluster-rows tr[data-cluster="app"] td');
      expect(await summary.nth(6).textContent()).toBe('1');
      // Two polls give one rate sample; wait for a second sample so a line is drawn.
      await waitFor(
        async () => Number(await page.locator('#rate-chart').getAttribute('data-samples')) >= 2,
        15_000,
        250,
      );
      expect(Number(await page.locator('#rate-requests').textContent())).toBeGreaterThan(0);
      expect(await page.locator('#rate-chart polyline.requests').getAttribute('points')).toMatch(/\d,\d.* \d/);
      await page.screenshot({ path: join(SCREENSHOTS, 'gateway-ui.png') });
      await page.screenshot({ path: join(SCREENSHOTS, 'gateway-ui-full.png'), fullPage: true });
    } finally {
      trafficOn = false;
      await traffic;
    }
    expect(consoleErrors).toEqual([]);
  }, 60_000);

  it('renders a 1,000-endpoint cluster as one table with its priorities and localities', async () => {
    await page.selectOption('#cluster-select', 'big');
    await waitFor(async () => (await page.locator('#endpoint-rows tr').count()) === BIG_CLUSTER_SIZE, 10_000, 100);
    expect(await page.locator('#endpoint-rows tr[data-address="127.0.13.250:9"]').textContent()).toContain('us-east');
    const summary = await page.locator('#cluster-rows tr[data-cluster="big"]').textContent();
    expect(summary).toContain('1000');
    expect(summary).toContain('P0: 100%');
    // A poll with the same data leaves the rows alone: the same DOM nodes survive it.
    expect(await survivesPolls(page, '#endpoint-rows tr')).toBe(true);
    await page.screenshot({ path: join(SCREENSHOTS, 'gateway-ui-big-cluster.png') });
    expect(consoleErrors).toEqual([]);
  }, 60_000);

  it('lists a config change with its diff', async () => {
    const before = (await (await admin('/config/versions')).body.json()) as Array<{ version: number }>;
    const last = Math.max(...before.map((v) => v.version));
    const put = await admin('/routes/maintenance', {
      method: 'PUT',
      body: JSON.stringify({ match: { path: { exact: '/maintenance' } }, directResponse: { status: 503 } }),
    });
    expect(put.statusCode).toBe(201);
    const { version } = (await put.body.json()) as { version: number };
    expect(version).toBe(last + 1);
    const versions = (await (await admin(`/config/versions/${version}`)).body.json()) as {
      version: number;
      current: boolean;
      config: { admin: { token: string } };
    };
    expect(versions).toMatchObject({ version, current: true });
    expect(versions.config.admin.token).toBe('<redacted>');

    await page.locator(`#version-rows tr[data-version="${version}"]`).waitFor({ timeout: 10_000 });
    const diff = page.locator(`#diff[data-from="${last}"][data-to="${version}"]`);
    await diff.waitFor({ timeout: 10_000 });
    const added = await diff.locator('span.add').allInnerTexts();
    expect(added.join('\n')).toContain('"name": "maintenance"');
    expect(added.join('\n')).toContain('"exact": "/maintenance"');
    expect(await diff.locator('span.del').count()).toBe(0);
    expect(await page.locator('#route-rows').textContent()).toContain('maintenance');
    // Any two versions: back to front shows the same lines removed.
    await page.selectOption('#diff-from', String(version));
    await page.selectOption('#diff-to', String(last));
    await page.locator(`#diff[data-from="${version}"][data-to="${last}"]`).waitFor();
    expect((await page.locator('#diff span.del').allInnerTexts()).join('\n')).toContain('"name": "maintenance"');
    await page.selectOption('#diff-from', String(last));
    await page.selectOption('#diff-to', String(version));
    await page.locator('#versions').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, 'gateway-ui-versions.png') });
    expect(consoleErrors).toEqual([]);
  }, 60_000);
});

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import type { Browser, Page } from 'playwright-core';
import { HAS_CHROMIUM, openUiBrowser, survivesPolls } from '../helpers/browser.js';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { HubClient } from '../../src/control/managed/hub-client.js';
import type { GatewayReport } from '../../src/hub/protocol.js';
import { systemRng } from '../../src/common/clock.js';
import { createCsr, generateKeyPair } from '../../src/common/x509-builder.js';
import { REPO, tempDir, waitFor } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';

const OPERATOR_TOKEN = 'hub-ui-operator-token';
const GATEWAY_TOKEN = 'hub-ui-gateway-token';
const TRUST_DOMAIN = 'mesh.test';
/** Screenshots land here (gitignored); docs/ui-hub.png is a copy of one. */
const SCREENSHOTS = join(REPO, 'test-output', 'ui');

/** A gateway of the test fleet: where it is, whether its `payments` instances are healthy, whether it nacks. */
interface TestGateway {
  id: string;
  cluster: string;
  region: string;
  zone: string;
  payments: number;
  rejects?: boolean;
}

const FLEET: TestGateway[] = [
  { id: 'gw-east-1', cluster: 'east', region: 'us-east', zone: 'us-east-1a', payments: 2 },
  { id: 'gw-west-1', cluster: 'west', region: 'eu-west', zone: 'eu-west-1a', payments: 1 },
  { id: 'gw-west-2', cluster: 'west', region: 'eu-west', zone: 'eu-west-1b', payments: 0 },
  { id: 'gw-canary', cluster: 'canary', region: 'eu-west', zone: 'eu-west-1b', payments: 0, rejects: true },
];

describe.skipIf(!HAS_CHROMIUM)('hub UI in headless Chromium', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  const healthy = new Map(FLEET.map((g) => [g.id, true]));
  const clients = new Map<string, HubClient>();
  let hub: RunningHub;
  let url: string;
  let browser: Browser;
  let page: Page;
  let consoleErrors: string[];
  const api = (path: string, token = OPERATOR_TOKEN, method: 'GET' | 'POST' = 'GET', body?: unknown) =>
    request(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const reportOf = (g: TestGateway, index: number): GatewayReport => ({
    labels: { cluster: g.cluster },
    locality: { region: g.region, zone: g.zone, subzone: '' },
    eastWestAddress: `127.0.0.1:${15001 + index}`,
    instances: Array.from({ length: g.payments }, (_, i) => ({
      cluster: 'payments',
      address: `10.${index}.0.${i + 1}:8080`,
      labels: { app: 'payments' },
      healthy: healthy.get(g.id)!,
    })),
  });

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const dir = tempDir('meridian-hub-ui-');
    const port = await closedPort();
    url = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${port}`,
          tokens: [
            { name: 'operator', token: OPERATOR_TOKEN },
            { name: 'gateways', token: GATEWAY_TOKEN, gateways: FLEET.map((g) => g.id) },
          ],
          ca: { trustDomain: TRUST_DOMAIN, svidTtl: '1h' },
        },
        routes: [{ name: 'hello', match: { path: { exact: '/hello' } }, directResponse: { status: 200 } }],
        virtualDestinations: [
          {
            name: 'payments',
            host: 'payments.mesh',
            selector: { app: 'payments' },
            failover: { order: ['east', 'west'] },
          },
        ],
      }),
    );
    hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
    cleanup.push(() => hub.stop());
    FLEET.forEach((g, index) => {
      const client = new HubClient(
        { url, id: g.id, token: GATEWAY_TOKEN, reportIntervalMs: 60_000 },
        {
          report: () => reportOf(g, index),
          apply: async () => (g.rejects ? [{ path: 'routes[0]', message: 'refused by the test' }] : undefined),
        },
        systemRng,
      );
      client.start();
      clients.set(g.id, client);
      cleanup.push(async () => client.stop());
    });
    // One gateway holds an SVID, so the certificate view has a row.
    const csr = await createCsr(await generateKeyPair(), {
      commonName: 'gw-east-1',
      uris: [`spiffe://${TRUST_DOMAIN}/cluster/east/gateway/gw-east-1`],
    });
    const svid = await api('/v1/gateways/gw-east-1/svid', OPERATOR_TOKEN, 'POST', { csr });
    expect(svid.statusCode).toBe(200);
    await svid.body.dump();
    ({ browser, page, consoleErrors } = await openUiBrowser(OPERATOR_TOKEN, { width: 1280, height: 530 }));
    cleanup.push(() => browser.close());
  }, 60_000);

  afterAll(async () => {
    while (cleanup.length) await cleanup.pop()!().catch(() => {});
  });

  it("is behind the hub's authentication, for operators only, and serves only its own files", async () => {
    const anonymous = await request(`${url}/ui/`);
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();
    const asGateway = await api('/ui/', GATEWAY_TOKEN);
    expect(asGateway.statusCode).toBe(403);
    await asGateway.body.dump();
    const ok = await api('/ui/');
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-security-policy']).toContain("script-src 'self'");
    expect(await ok.body.text()).toContain('<script src="app.js"');
    for (const name of ['common.js', 'style.css', 'app.js']) {
      const file = await api(`/ui/${name}`);
      expect(file.statusCode).toBe(200);
      await file.body.dump();
    }
    const missing = await api('/ui/server.js');
    expect(missing.statusCode).toBe(404);
    await missing.body.dump();
    const write = await api('/ui/', OPERATOR_TOKEN, 'POST');
    expect(write.statusCode).toBe(405);
    await write.body.dump();
  });

  it('shows the fleet by region and zone with each gateway in sync, or rejecting', async () => {
    await page.goto(`${url}/ui/`);
    for (const g of FLEET) {
      const row = page.locator(`#fleet-rows tr[data-gateway="${g.id}"]`);
      await row.waitFor({ timeout: 10_000 });
      expect(await row.getAttribute('data-region')).toBe(g.region);
      expect(await row.getAttribute('data-zone')).toBe(g.zone);
      expect(await row.getAttribute('data-connected')).toBe('true');
      const expected = g.rejects ? 'rejected' : 'in-sync';
      await waitFor(
        async () => (await row.locator('td[data-config]').getAttribute('data-config')) === expected,
        10_000,
        200,
      );
    }
    // Gateways sit under their region / zone heading, regions and zones in order.
    const order = await page
      .locator('#fleet-rows tr')
      .evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.gateway ?? `[${r.getAttribute('data-zone')}]`));
    expect(order).toEqual([
      '[eu-west-1a]',
      'gw-west-1',
      '[eu-west-1b]',
      'gw-canary',
      'gw-west-2',
      '[us-east-1a]',
      'gw-east-1',
    ]);
    const version = (await (await api('/fleet')).body.json()) as { version: number };
    expect(await page.locator('#fleet-rows tr[data-gateway="gw-west-1"]').textContent()).toContain(
      `v${version.version}`,
    );
    // The SVID issued to gw-east-1, with the CA it came from.
    expect(await page.locator('#svid-rows tr[data-gateway="gw-east-1"]').textContent()).toContain(
      `spiffe://${TRUST_DOMAIN}/cluster/east/gateway/gw-east-1`,
    );
    expect(await page.locator('#ca-summary').textContent()).toContain(`trust domain ${TRUST_DOMAIN}`);
    expect(await page.locator('#svid-rows td[data-svid]').getAttribute('data-svid')).toBe('ok');
    // The filter leaves only the gateway that is not in sync.
    await page.check('#only-problems');
    expect(await page.locator('#fleet-rows tr[data-gateway]').evaluateAll((rows) => rows.length)).toBe(1);
    await page.uncheck('#only-problems');
    expect(consoleErrors).toEqual([]);
  }, 60_000);

  it('moves a virtual destination to the next cluster when its instances turn unhealthy', async () => {
    const row = page.locator('#vd-rows tr[data-vd="payments"]');
    await waitFor(async () => (await row.first().getAttribute('data-active')) === 'gw-east-1', 10_000, 200);
    expect(await row.count()).toBe(1);
    expect((await row.getAttribute('data-from'))!.split(',').sort()).toEqual(FLEET.map((g) => g.id).sort());
    expect(await row.textContent()).toContain('order east → west');
    await page.locator('#virtual-destinations').scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(SCREENSHOTS, 'hub-ui-before-failover.png'), fullPage: true });

    // gw-east-1's payments instances fail: traffic moves to the west cluster's tier.
    healthy.set('gw-east-1', false);
    await clients.get('gw-east-1')!.reportNow();
    await waitFor(async () => (await row.getAttribute('data-active')) === 'gw-west-1', 10_000, 200);
    expect(await row.locator('li.active').textContent()).toContain('gw-west-1');
    expect(await row.locator('[data-member="gw-east-1"]').getAttribute('class')).toBe('unhealthy');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SCREENSHOTS, 'hub-ui.png') });
    await page.screenshot({ path: join(SCREENSHOTS, 'hub-ui-full.png'), fullPage: true });

    // Healthy again: traffic returns to the east cluster.
    healthy.set('gw-east-1', true);
    await clients.get('gw-east-1')!.reportNow();
    await waitFor(async () => (await row.getAttribute('data-active')) === 'gw-east-1', 10_000, 200);
    expect(consoleErrors).toEqual([]);
  }, 60_000);

  it('leaves rows alone when a poll brings the same data', async () => {
    expect(await survivesPolls(page, '#fleet-rows tr[data-gateway]')).toBe(true);
    expect(consoleErrors).toEqual([]);
  }, 30_000);
});

describe.skipIf(!HAS_CHROMIUM)('hub UI with a fleet of 100 gateways', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    while (cleanup.length) await cleanup.pop()!().catch(() => {});
  });

  it('lists all 100 in their 10 zones, in sync, without console errors, and leaves the rows alone between polls', async () => {
    const dir = tempDir('meridian-hub-ui-100-');
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: {
          address: `127.0.0.1:${port}`,
          tokens: [
            { name: 'operator', token: OPERATOR_TOKEN },
            { name: 'gateways', token: GATEWAY_TOKEN },
          ],
        },
        routes: [{ name: 'hello', match: { path: { exact: '/hello' } }, directResponse: { status: 200 } }],
      }),
    );
    const hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
    cleanup.push(() => hub.stop());
    for (let i = 0; i < 100; i++) {
      const zone = `zone-${i % 10}`;
      const client = new HubClient(
        { url, id: `gw-${String(i).padStart(3, '0')}`, token: GATEWAY_TOKEN, reportIntervalMs: 60_000 },
        {
          report: () => ({
            labels: { cluster: `c-${i % 10}` },
            locality: { region: 'r', zone, subzone: '' },
            instances: [],
          }),
          apply: async () => undefined,
        },
        systemRng,
      );
      client.start();
      cleanup.push(async () => client.stop());
    }
    const { browser, page, consoleErrors } = await openUiBrowser(OPERATOR_TOKEN, { width: 1280, height: 900 });
    cleanup.push(() => browser.close());
    await page.goto(`${url}/ui/`);
    await waitFor(
      async () =>
        (await page
          .locator('#fleet-rows td[data-config]')
          .evaluateAll((cells) => cells.filter((c) => c.getAttribute('data-config') === 'in-sync').length)) === 100,
      20_000,
      250,
    );
    expect(await page.locator('#fleet-rows tr[data-zone]:not([data-gateway])').count()).toBe(10);
    expect(await survivesPolls(page, '#fleet-rows tr[data-gateway]')).toBe(true);
    expect(consoleErrors).toEqual([]);
  }, 60_000);
});

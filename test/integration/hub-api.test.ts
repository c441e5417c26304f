import { join } from 'node:path';
import { readdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { startHub, type RunningHub } from '../../src/hub/control-plane.js';
import { HubClient } from '../../src/control/managed/hub-client.js';
import type { Snapshot } from '../../src/hub/protocol.js';
import { systemRng } from '../../src/common/clock.js';
import { tempDir, waitFor } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { TestCa } from '../helpers/pki.js';
import { readFileSync } from 'node:fs';

const ca = new TestCa('Hub CA');
const server = ca.issue({ cn: 'hub', san: ['DNS:localhost', 'IP:127.0.0.1'], eku: 'serverAuth' });
const client = ca.issue({ cn: 'gw-1', san: ['URI:spiffe://mesh.internal/gateway/gw-1'], eku: 'clientAuth' });
const operator = ca.issue({ cn: 'operator', eku: 'clientAuth' });
const tls = { ca: readFileSync(ca.cert), cert: readFileSync(client.cert), key: readFileSync(client.key) };
// Operators: a certificate without a SPIFFE ID. A gateway's SVID may only speak for that gateway.
const dispatcher = new Agent({
  connect: { ca: tls.ca, cert: readFileSync(operator.cert), key: readFileSync(operator.key) },
});
const asGateway = new Agent({ connect: tls });

let hub: RunningHub;
let url: string;
let dir: string;
let port: number;

const api = async (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
  const r = await request(`${url}${path}`, {
    dispatcher,
    method: (init.method ?? 'GET') as 'GET',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: r.statusCode, headers: r.headers, body: (await r.body.json()) as any };
};

const report = { labels: { cluster: 'gw-1' }, locality: { region: 'r', zone: 'z', subzone: '' }, instances: [] };

async function start() {
  hub = await startHub({ configFile: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') });
}

describe('management server API over mTLS', () => {
  beforeAll(async () => {
    dir = tempDir('meridian-hub-');
    port = await closedPort();
    url = `https://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, 'hub.yaml'),
      stringify({
        hub: { address: `127.0.0.1:${port}`, tls: { cert: server.cert, key: server.key, clientCa: ca.cert } },
        routes: [{ name: 'hello', match: { path: { exact: '/hello' } }, directResponse: { status: 200, body: 'hi' } }],
      }),
    );
    await start();
  });
  afterAll(async () => {
    await hub.stop();
    await dispatcher.close();
    await asGateway.close();
  });

  it('refuses a client without a certificate at the TLS handshake', async () => {
    const bare = new Agent({ connect: { ca: tls.ca } });
    await expect(request(`${url}/fleet`, { dispatcher: bare })).rejects.toThrow();
    await bare.close();
  });

  it('delivers a snapshot to a watching client with a certificate and records its ack under its SPIFFE identity', async () => {
    const received: Snapshot[] = [];
    const watcher = new HubClient(
      { url, id: 'gw-1', tls, reportIntervalMs: 60000 },
      { report: () => report, apply: async (s) => void received.push(s) },
      systemRng,
    );
    watcher.start();
    try {
      await waitFor(() => received.length > 0, 5000);
      expect(received[0]!.resources.routes.map((r) => r.name)).toEqual(['hello']);
      const fleet = await waitFor(async () => {
        const f = await api('/fleet');
        return f.body.gateways[0]?.inSync ? f.body : undefined;
      }, 5000);
      expect(fleet.gateways[0]).toMatchObject({
        id: 'gw-1',
        identity: 'spiffe://mesh.internal/gateway/gw-1',
        connected: true,
        lastAck: { version: received[0]!.version, hash: received[0]!.hash },
      });
      // A change reaches the open watch.
      const put = await api('/routes/bye', {
        method: 'PUT',
        body: { match: { path: { exact: '/bye' } }, directResponse: { status: 200 } },
      });
      expect(put.status).toBe(200);
      await waitFor(() => received.at(-1)!.version === put.body.version, 5000);
      expect(received.at(-1)!.resources.routes.map((r) => r.name)).toEqual(['hello', 'bye']);
    } finally {
      watcher.stop();
    }
  });

  it('honours If-Match (412 on a stale version), rolls back as a new version and keeps history across a restart', async () => {
    const cur = await api('/config');
    const version = Number(String(cur.headers.etag).replace(/"/g, ''));
    const stale = await api('/routes/x', {
      method: 'PUT',
      headers: { 'if-match': `"${version - 1}"` },
      body: { match: {}, directResponse: { status: 204 } },
    });
    expect(stale.status).toBe(412);
    const ok = await api('/routes/x', {
      method: 'PUT',
      headers: { 'if-match': `"${version}"` },
      body: { match: {}, directResponse: { status: 204 } },
    });
    expect(ok.body.version).toBe(version + 1);
    const back = await api('/config/rollback', { method: 'POST', body: { version } });
    expect(back.body.version).toBe(version + 2);
    expect((await api('/routes/x')).status).toBe(404);
    await hub.stop();
    await start();
    const versions = await api('/config/versions');
    expect(versions.body.at(-1)).toMatchObject({ version: version + 2, current: true });
  });

  it('removes the temp files a killed write left beside hub-state.json on start and keeps the committed version', async () => {
    const before = (await api('/config/versions')).body.at(-1).version;
    await hub.stop();
    const stateDir = join(dir, 'state');
    writeFileSync(join(stateDir, 'hub-state.json.2147483646.tmp'), '{"current": 99, "versions": [');
    writeFileSync(join(stateDir, 'hub-state.json.keep'), 'not a temp file');
    await start();
    expect(readdirSync(stateDir)).not.toContain('hub-state.json.2147483646.tmp');
    expect(readdirSync(stateDir)).toContain('hub-state.json.keep');
    expect((await api('/config/versions')).body.at(-1)).toMatchObject({ version: before, current: true });
  });

  it('refuses a __proto__ key and a body nested beyond 64 levels with 400, like the admin API, version unchanged', async () => {
    const before = (await api('/config/versions')).body.at(-1).version;
    const put = async (body: string) => {
      const r = await request(`${url}/routes/p`, {
        dispatcher,
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body,
      });
      return {
        status: r.statusCode,
        body: (await r.body.json()) as { errors: Array<{ path: string; message: string }> },
      };
    };
    const proto = await put('{"match":{"__proto__":{"x":1}},"directResponse":{"status":204}}');
    expect(proto).toEqual({
      status: 400,
      body: { errors: [{ path: 'match.__proto__', message: 'the key "__proto__" is not allowed' }] },
    });
    const deep = await put('{"match":' + '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000) + '}');
    expect(deep.status).toBe(400);
    expect(deep.body.errors[0].message).toMatch(/nested more than 64 levels deep/);
    expect((await api('/config/versions')).body.at(-1)).toMatchObject({ version: before, current: true });
  });

  it('shows hub tokens redacted and keeps them through GET-edit-PUT and a replace without the hub section', async () => {
    const before = await api('/config');
    const doc = before.body;
    doc.hub.tokens = [{ name: 'ops', token: 'ops-token-1234' }];
    expect((await api('/config', { method: 'PUT', body: doc })).status).toBe(200);
    const shown = await api('/config');
    expect(JSON.stringify(shown.body)).not.toContain('ops-token-1234');
    expect(shown.body.hub.tokens).toEqual([{ name: 'ops', token: '<redacted>' }]);
    shown.body.routes.push({ name: 'extra', match: { path: { exact: '/extra' } }, directResponse: { status: 200 } });
    expect((await api('/config', { method: 'PUT', body: shown.body })).status).toBe(200);
    expect(hub.store.current!.config.hub.tokens).toEqual([{ name: 'ops', token: 'ops-token-1234' }]);
    const { hub: _hub, ...withoutHub } = shown.body;
    expect((await api('/config', { method: 'PUT', body: withoutHub })).status).toBe(200);
    expect(hub.store.current!.config.hub).toMatchObject({
      address: doc.hub.address,
      tokens: [{ name: 'ops', token: 'ops-token-1234' }],
    });
    // Put the document back as it was (no tokens) for the tests that follow.
    const restore = (await api('/config')).body;
    delete restore.hub.tokens;
    restore.routes = restore.routes.filter((r: { name: string }) => r.name !== 'extra');
    expect((await api('/config', { method: 'PUT', body: restore })).status).toBe(200);
  });

  it('lets a gateway certificate act only as the gateway its SPIFFE ID names', async () => {
    const call = (path: string, method = 'GET', body?: unknown) =>
      request(`${url}${path}`, {
        dispatcher: asGateway,
        method: method as 'GET',
        body: body && JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
      });
    const other = await call('/v1/gateways/gw-2/report', 'POST', report);
    expect(other.statusCode).toBe(403);
    expect(((await other.body.json()) as { message: string }).message).toContain('spiffe://mesh.internal/gateway/gw-1');
    const own = await call('/v1/gateways/gw-1/report', 'POST', report);
    expect(own.statusCode).toBe(200);
    await own.body.dump();
    const admin = await call('/config');
    expect(admin.statusCode).toBe(403);
    await admin.body.dump();
  });

  it('rejects malformed reports with field paths and a watch before any report', async () => {
    const bad = await api('/v1/gateways/gw-x/report', {
      method: 'POST',
      body: { labels: {}, locality: {}, instances: [{ address: 'nope' }] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { path: string }) => e.path)).toContain('locality.region');
    const watch = await api('/v1/gateways/gw-unknown/watch');
    expect(watch.status).toBe(409);
  });
});

describe('management server persisted state', () => {
  it('is validated again on start: a document the current version refuses stops the start with its path', async () => {
    const d = tempDir('meridian-hub-state-');
    writeFileSync(
      join(d, 'hub.yaml'),
      stringify({
        hub: { address: `127.0.0.1:${await closedPort()}` },
        routes: [{ name: 'hello', match: { path: { exact: '/hello' } }, directResponse: { status: 200 } }],
      }),
    );
    const first = await startHub({ configFile: join(d, 'hub.yaml'), stateDir: join(d, 'state') });
    await first.stop();
    const again = await startHub({ configFile: join(d, 'hub.yaml'), stateDir: join(d, 'state') });
    expect(again.store.list().map((v) => v.version)).toEqual([1]); // a valid, current document: no new version
    await again.stop();
    const file = join(d, 'state', 'hub-state.json');
    const state = JSON.parse(readFileSync(file, 'utf8'));
    state.versions[0].config.routes[0].directResponse.status = 99;
    writeFileSync(file, JSON.stringify(state));
    await expect(startHub({ configFile: join(d, 'hub.yaml'), stateDir: join(d, 'state') })).rejects.toThrow(
      `${file} (version 1) routes[0].directResponse.status`,
    );
  });
});

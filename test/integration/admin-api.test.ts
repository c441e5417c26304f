import { describe, it, expect, afterEach } from 'vitest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import autocannon from 'autocannon';
import { WebSocketServer, WebSocket } from 'ws';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request, Agent } from 'undici';
import { spawnGateway, startInProcess, baseConfig, waitFor, writeConfig, MAIN, REPO } from '../helpers/gateway.js';
import { startUpstream, okHandler } from '../helpers/upstream.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

async function upstream(name = 'up') {
  const up = await startUpstream(okHandler(name));
  cleanup.push(() => up.close());
  return up;
}

const json = async (r: Awaited<ReturnType<typeof request>>) => JSON.parse(await r.body.text());

function cfg(upAddress: string, extra: Record<string, unknown> = {}) {
  return baseConfig({
    gateway: { name: 'adm', workers: 2, accessLog: { enabled: false } },
    routes: [{ name: 'app', match: { path: { prefix: '/' } }, cluster: 'up' }],
    clusters: [{ name: 'up', endpoints: [{ address: upAddress }] }],
    ...extra,
  });
}

/** The refused writes changed nothing: still version 1 with only the `app` route. */
async function expectFirstVersion(admin: string) {
  const now = await request(`${admin}/config`);
  expect(now.headers.etag).toBe('"1"');
  expect((await json(now)).routes.map((r: { name: string }) => r.name)).toEqual(['app']);
}

function workerPids(primary: number): number[] {
  return execFileSync('ps', ['-o', 'pid=', '--ppid', String(primary)])
    .toString()
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter(Boolean);
}

describe('management API on a 2-worker gateway', () => {
  it('applies changes to every worker under load with zero non-2xx, keeping a WebSocket open', async () => {
    const up = await upstream('v1');
    const up2 = await upstream('v2');
    const wsHttp = http.createServer();
    const wss = new WebSocketServer({ server: wsHttp });
    wss.on('connection', (s) => s.on('message', (m) => s.send(`echo:${m}`)));
    await new Promise<void>((r) => wsHttp.listen(0, '127.0.0.1', r));
    cleanup.push(async () => {
      wss.close();
      wsHttp.close();
    });
    const gw = await spawnGateway(
      cfg(up.address, {
        routes: [
          { name: 'ws', match: { path: { prefix: '/ws' } }, cluster: 'ws' },
          { name: 'app', match: { path: { prefix: '/' } }, cluster: 'up' },
        ],
        clusters: [
          { name: 'up', endpoints: [{ address: up.address }] },
          { name: 'ws', endpoints: [{ address: `127.0.0.1:${(wsHttp.address() as AddressInfo).port}` }] },
        ],
      }),
    );
    cleanup.push(() => gw.stop());
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`);
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    let wsClosed = false;
    ws.on('close', () => (wsClosed = true));
    const load = autocannon({ url: `${gw.url}/load`, connections: 10, duration: 3 });
    // The load is flowing before the changes.
    await waitFor(() => up.requests.filter((q) => q.url === '/load').length >= 10, 5000, 10);
    const put = await request(`${gw.admin}/clusters/up/endpoints/${up2.address}`, { method: 'PUT', body: '{}' });
    expect(put.statusCode).toBe(200);
    const { version } = await json(put);
    const route = await request(`${gw.admin}/routes/new`, {
      method: 'PUT',
      body: JSON.stringify({ match: { path: { exact: '/new' } }, directResponse: { status: 200, body: 'new route' } }),
    });
    expect(route.statusCode).toBe(201);
    expect((await json(route)).version).toBe(version + 1);
    // "Live when the call returns": fresh connections (either worker) all see the new route.
    for (let i = 0; i < 30; i++) {
      const a = new Agent();
      const r = await request(`${gw.url}/new`, { dispatcher: a });
      expect(await r.body.text()).toBe('new route');
      await a.close();
    }
    const result = await load;
    expect(result.non2xx).toBe(0);
    expect(result.errors).toBe(0);
    const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
    ws.send('still here');
    expect(await reply).toBe('echo:still here');
    expect(wsClosed).toBe(false);
    ws.close();
  });

  it('persists a change across a restart and keeps the version history', async () => {
    const up = await upstream();
    const gw = await spawnGateway(cfg(up.address));
    const put = await request(`${gw.admin}/routes/kept`, {
      method: 'PUT',
      body: JSON.stringify({ match: { path: { exact: '/kept' } }, directResponse: { status: 200, body: 'kept' } }),
    });
    expect(put.statusCode).toBe(201);
    expect(await gw.stop()).toBe(0);
    const again = await spawnGateway(gw.configFile, { stateDir: gw.stateDir });
    cleanup.push(() => again.stop());
    expect(await (await request(`${again.url}/kept`)).body.text()).toBe('kept');
    const versions = await json(await request(`${again.admin}/config/versions`));
    expect(versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    expect(versions.at(-1).current).toBe(true);
  });

  it('validates persisted state on start: older configs get the current defaults, invalid ones stop the start', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      cfg(up.address, { gateway: { name: 'pv', workers: 1, accessLog: { enabled: false } } }),
    );
    expect(await gw.stop()).toBe(0);
    const stateFile = join(gw.stateDir, 'state.json');
    const state = JSON.parse(readFileSync(stateFile, 'utf8'));
    // As if written by an older Meridian that had no maxConnections field.
    delete state.versions[0].config.gateway.limits.maxConnections;
    writeFileSync(stateFile, JSON.stringify(state));
    const again = await spawnGateway(gw.configFile, { stateDir: gw.stateDir });
    const versions = await json(await request(`${again.admin}/config/versions`));
    expect(versions.map((v: { version: number; source: string }) => [v.version, v.source])).toEqual([
      [1, 'file'],
      [2, 'defaults:1'],
    ]);
    expect((await json(await request(`${again.admin}/config`))).gateway.limits.maxConnections).toBe(0);
    expect(await again.stop()).toBe(0);
    // A stored config this version refuses: the start fails with the state file and the field's path.
    const broken = JSON.parse(readFileSync(stateFile, 'utf8'));
    broken.versions.at(-1).config.clusters[0].endpoints[0].address = 'not-an-address';
    writeFileSync(stateFile, JSON.stringify(broken));
    const r = spawnSync(process.execPath, [MAIN, 'start', '-c', gw.configFile, '--state-dir', gw.stateDir], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 15000,
    });
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toContain(`${stateFile} (version 2) clusters[0].endpoints[0].address`);
  });

  it('leaves the old or the new state file after kill -9 of the primary during writes, never a torn one', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      cfg(up.address, { gateway: { name: 'k9', workers: 1, accessLog: { enabled: false } } }),
    );
    const acked: number[] = [];
    let n = 0;
    const writer = (async () => {
      for (;;) {
        try {
          const r = await request(`${gw.admin}/routes/r${n++}`, {
            method: 'PUT',
            body: JSON.stringify({ match: { path: { exact: `/r${n}` } }, directResponse: { status: 200 } }),
          });
          acked.push((await json(r)).version);
        } catch {
          return;
        }
      }
    })();
    await waitFor(() => acked.length >= 5, 10000);
    gw.kill('SIGKILL');
    await writer;
    await gw.exited;
    const state = JSON.parse(readFileSync(join(gw.stateDir, 'state.json'), 'utf8')) as { current: number };
    const last = acked.at(-1)!;
    expect([last, last + 1]).toContain(state.current);
    const again = await spawnGateway(gw.configFile, { stateDir: gw.stateDir });
    cleanup.push(() => again.stop());
    expect(again.ready.version).toBe(state.current);
  });

  it('removes the temp files a kill -9 during a write left in the state dir on start, and loads the committed state', async () => {
    const up = await upstream();
    const first = await startInProcess(
      cfg(up.address, { gateway: { name: 'tmp', workers: 1, accessLog: { enabled: false } } }),
    );
    await (
      await request(`${first.admin}/routes/kept`, {
        method: 'PUT',
        body: JSON.stringify({ match: { path: { exact: '/kept' } }, directResponse: { status: 200, body: 'kept' } }),
      })
    ).body.dump();
    await first.stop();
    // Pids of writers that are gone: a child that has exited, and one above any pid_max.
    const stale = [`state.json.${spawnSync(process.execPath, ['-e', '']).pid}.tmp`, 'state.json.2147483646.tmp'];
    // A killed writer leaves a torn temp file; the committed state.json stays the truth.
    for (const name of stale) writeFileSync(join(first.stateDir, name), '{"current": 99, "versions": [');
    // Not this code's temp names, or (the test process's pid) a live process that may still be writing.
    const unrelated = [
      'state.json.bak',
      'notes.tmp',
      'state.json.x.tmp',
      'other.json.123.tmp',
      `state.json.${process.pid}.tmp`,
    ];
    for (const name of unrelated) writeFileSync(join(first.stateDir, name), 'keep');
    const again = await spawnGateway(first.configFile, { stateDir: first.stateDir });
    cleanup.push(() => again.stop());
    expect(again.ready.version).toBe(2);
    expect(await (await request(`${again.url}/kept`)).body.text()).toBe('kept');
    const names = readdirSync(first.stateDir);
    for (const name of stale) expect(names).not.toContain(name);
    for (const name of unrelated) expect(names).toContain(name);
    expect(names).toContain('state.json');
  });
});

describe('management API contract', () => {
  it('rejects invalid input with field paths and keeps the old config serving', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'v', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    const before = await request(`${gw.admin}/config`);
    const etag = before.headers.etag;
    const config = await json(before);
    config.clusters[0].endpoints[0].address = 'not-an-address';
    const bad = await request(`${gw.admin}/config`, { method: 'PUT', body: JSON.stringify(config) });
    expect(bad.statusCode).toBe(400);
    expect((await json(bad)).errors).toContainEqual({
      path: 'clusters[0].endpoints[0].address',
      message: 'expected host:port',
    });
    const badCluster = await request(`${gw.admin}/clusters/up`, {
      method: 'PUT',
      body: JSON.stringify({ endpoints: [{ address: '1.2.3.4:80', weight: 0 }] }),
    });
    expect(badCluster.statusCode).toBe(400);
    expect((await json(badCluster)).errors[0].path).toBe('clusters[0].endpoints[0].weight');
    const dangling = await request(`${gw.admin}/clusters/up`, { method: 'DELETE' });
    expect(dangling.statusCode).toBe(400);
    expect((await json(dangling)).errors[0]).toEqual({ path: 'routes[0].cluster', message: 'unknown cluster "up"' });
    expect((await request(`${gw.admin}/config`)).headers.etag).toBe(etag);
    expect((await request(`${gw.url}/x`)).statusCode).toBe(200);
    const validate = await request(`${gw.admin}/config/validate`, { method: 'POST', body: JSON.stringify(config) });
    expect(validate.statusCode).toBe(400);
    expect((await json(validate)).valid).toBe(false);
  });

  it('refuses a stale If-Match with 412 and accepts the current one', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'e', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    const body = JSON.stringify({ match: { path: { exact: '/a' } }, directResponse: { status: 200 } });
    const stale = await request(`${gw.admin}/routes/a`, { method: 'PUT', headers: { 'if-match': '"99"' }, body });
    expect(stale.statusCode).toBe(412);
    await stale.body.dump();
    const ok = await request(`${gw.admin}/routes/a`, { method: 'PUT', headers: { 'if-match': '"1"' }, body });
    expect(ok.statusCode).toBe(201);
    expect(ok.headers.etag).toBe('"2"');
    await ok.body.dump();
  });

  it('refuses a body nested 10,000 levels deep (JSON or YAML) with 400 naming the depth limit, config unchanged', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'deep', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    const deepJson = '{"match":' + '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000) + ',"cluster":"up"}';
    const deepYaml = 'match:\n  ' + '- '.repeat(10_000) + 'x\ncluster: up\n';
    for (const [path, body, type] of [
      ['/routes/deep', deepJson, 'application/json'],
      ['/config', deepJson, 'application/json'],
      ['/routes/deep', deepYaml, 'application/yaml'],
      ['/routes/deep', '['.repeat(10_000) + ']'.repeat(10_000), 'application/yaml'],
    ]) {
      const r = await request(`${gw.admin}${path}`, { method: 'PUT', headers: { 'content-type': type }, body });
      expect(r.statusCode, `${type} ${path}`).toBe(400);
      expect((await json(r)).errors[0].message).toMatch(/nested more than 64 levels deep/);
    }
    await expectFirstVersion(gw.admin);
  });

  it('refuses a __proto__ key anywhere in a body with 400 naming its path, config unchanged', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'proto', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    const viaJson = await request(`${gw.admin}/routes/p`, {
      method: 'PUT',
      body: '{"match":{"path":{"prefix":"/p"},"__proto__":{"x":1}},"cluster":"up"}',
    });
    expect(viaJson.statusCode).toBe(400);
    expect((await json(viaJson)).errors).toEqual([
      { path: 'match.__proto__', message: 'the key "__proto__" is not allowed' },
    ]);
    const viaYaml = await request(`${gw.admin}/routes/p`, {
      method: 'PUT',
      headers: { 'content-type': 'application/yaml' },
      body: 'match:\n  path:\n    prefix: /p\n    __proto__: {x: 1}\ncluster: up\n',
    });
    expect(viaYaml.statusCode).toBe(400);
    expect((await json(viaYaml)).errors[0].path).toBe('match.path.__proto__');
    await expectFirstVersion(gw.admin);
  });

  it('rolls back to an earlier version as a new version', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'rb', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    await (
      await request(`${gw.admin}/routes/temp`, {
        method: 'PUT',
        body: JSON.stringify({ match: { path: { exact: '/temp' } }, directResponse: { status: 200, body: 'temp' } }),
      })
    ).body.dump();
    expect(await (await request(`${gw.url}/temp`)).body.text()).toBe('temp');
    const rb = await request(`${gw.admin}/config/rollback`, { method: 'POST', body: JSON.stringify({ version: 1 }) });
    expect(await json(rb)).toMatchObject({ version: 3, restored: 1 });
    expect((await request(`${gw.url}/temp`)).statusCode).toBe(200); // falls to the catch-all route again
    expect((await json(await request(`${gw.admin}/routes`))).map((r: { name: string }) => r.name)).toEqual(['app']);
  });

  it('restores the previous config as a new version when a valid change fails to apply (port in use)', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'af', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    const busy = http.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => busy.close(r)));
    const address = `127.0.0.1:${(busy.address() as AddressInfo).port}`;
    const put = await request(`${gw.admin}/listeners/extra`, {
      method: 'PUT',
      body: JSON.stringify({ address, protocol: 'http' }),
    });
    expect(put.statusCode).toBe(500);
    const body = await json(put);
    expect(body).toMatchObject({ error: 'apply_failed', version: 2, restoredVersion: 3 });
    expect(body.restoreErrors).toBeUndefined();
    expect(String(body.errors[0])).toMatch(/EADDRINUSE/);
    const now = await request(`${gw.admin}/config`);
    expect(now.headers.etag).toBe('"3"');
    expect((await json(now)).listeners.map((l: { name: string }) => l.name)).toEqual(['main']);
    const versions = await json(await request(`${gw.admin}/config/versions`));
    expect(versions.at(-1)).toMatchObject({ version: 3, source: 'rollback:1', current: true });
    expect((await request(`${gw.url}/x`)).statusCode).toBe(200);
  });

  it('enforces the admin token: 401 without, 403 wrong, 200 right; the ops listener needs none and serves only probes and metrics', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, {
        gateway: { name: 't', workers: 1, accessLog: { enabled: false } },
        admin: { address: '127.0.0.1:0', token: 's3cret-token', opsAddress: '127.0.0.1:0' },
      }),
    );
    cleanup.push(() => gw.stop());
    expect((await request(`${gw.admin}/config`)).statusCode).toBe(401);
    expect((await request(`${gw.admin}/config`, { headers: { authorization: 'Bearer wrong-token' } })).statusCode).toBe(
      403,
    );
    expect(
      (await request(`${gw.admin}/config`, { headers: { authorization: 'Bearer s3cret-token' } })).statusCode,
    ).toBe(200);
    const ops = `http://${gw.gw.addresses.ops}`;
    expect((await request(`${ops}/ready`)).statusCode).toBe(200);
    expect((await request(`${ops}/metrics`)).statusCode).toBe(200);
    expect((await request(`${ops}/config`)).statusCode).toBe(404);
    expect((await request(`${ops}/routes/x`, { method: 'DELETE' })).statusCode).toBe(404);
  });

  it('shows secrets redacted, keeps them through GET-edit-PUT and when a replace omits admin', async () => {
    const up = await upstream();
    const tokens = [
      { name: 'ops', token: 'ops-token-123' },
      { name: 'ci', token: 'ci-token-4567' },
    ];
    const gw = await startInProcess(
      cfg(up.address, {
        gateway: { name: 's', workers: 1, accessLog: { enabled: false } },
        admin: { address: '127.0.0.1:0', tokens },
        auth: {
          jwtProviders: [
            {
              name: 'hs',
              issuer: 'https://i',
              algorithms: ['HS256'],
              jwks: { keys: [{ kty: 'oct', kid: 'h1', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' }] },
            },
          ],
        },
      }),
    );
    cleanup.push(() => gw.stop());
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    const shown = await request(`${gw.admin}/config`, { headers: as('ops-token-123') });
    const text = await shown.body.text();
    expect(text).not.toContain('ops-token-123');
    expect(text).not.toContain('c2VjcmV0');
    const doc = JSON.parse(text);
    expect(doc.admin.tokens).toEqual([
      { name: 'ops', token: '<redacted>' },
      { name: 'ci', token: '<redacted>' },
    ]);
    expect(doc.auth.jwtProviders[0].jwks.keys[0]).toMatchObject({ kid: 'h1', k: '<redacted>' });
    // Edit the shown document (tokens reordered) and write it back: every secret is kept.
    doc.routes.push({
      name: 'extra',
      match: { path: { exact: '/extra' } },
      directResponse: { status: 200, body: 'extra' },
    });
    doc.admin.tokens.reverse();
    const put = await request(`${gw.admin}/config`, {
      method: 'PUT',
      headers: as('ci-token-4567'),
      body: JSON.stringify(doc),
    });
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    expect((await request(`${gw.admin}/config`, { headers: as('ops-token-123') })).statusCode).toBe(200);
    expect((await request(`${gw.admin}/config`, { headers: as('ci-token-4567') })).statusCode).toBe(200);
    expect(await (await request(`${gw.url}/extra`)).body.text()).toBe('extra');
    // A replace without an admin section keeps the tokens: the API stays closed.
    const { admin: _admin, ...withoutAdmin } = doc;
    const replace = await request(`${gw.admin}/config`, {
      method: 'PUT',
      headers: as('ops-token-123'),
      body: JSON.stringify(withoutAdmin),
    });
    expect(replace.statusCode).toBe(200);
    await replace.body.dump();
    expect((await request(`${gw.admin}/config`)).statusCode).toBe(401);
    // A placeholder for a secret that does not exist is an error with its path; nothing changes.
    const etag = (await request(`${gw.admin}/config`, { headers: as('ops-token-123') })).headers.etag;
    doc.admin.tokens.push({ name: 'new', token: '<redacted>' });
    const bad = await request(`${gw.admin}/config`, {
      method: 'PUT',
      headers: as('ops-token-123'),
      body: JSON.stringify(doc),
    });
    expect(bad.statusCode).toBe(400);
    expect((await json(bad)).errors).toEqual([
      { path: 'admin.tokens[2].token', message: '"<redacted>" keeps the current secret, and there is none here' },
    ]);
    expect((await request(`${gw.admin}/config`, { headers: as('ops-token-123') })).headers.etag).toBe(etag);
  });

  it('writes an audit line per change: who (token name), what, old and new version', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      cfg(up.address, {
        gateway: { name: 'au', workers: 1, accessLog: { enabled: false } },
        admin: { address: '127.0.0.1:0', tokens: [{ name: 'ci', token: 'ci-token-123' }] },
      }),
    );
    cleanup.push(() => gw.stop());
    const put = await request(`${gw.admin}/routes/audited`, {
      method: 'PUT',
      headers: { authorization: 'Bearer ci-token-123' },
      body: JSON.stringify({ match: { path: { exact: '/a' } }, directResponse: { status: 200 } }),
    });
    expect(put.statusCode).toBe(201);
    await put.body.dump();
    const audit = await waitFor(() =>
      gw.output
        .map((l) => {
          try {
            return JSON.parse(l);
          } catch {
            return undefined;
          }
        })
        .find((j) => j?.type === 'audit'),
    );
    expect(audit).toMatchObject({
      who: 'token:ci',
      action: 'put routes/audited',
      oldVersion: 1,
      newVersion: 2,
      changed: true,
    });
    expect(JSON.stringify(audit)).not.toContain('ci-token-123');
  });

  it('refuses to start on a non-loopback admin address without a token', () => {
    const file = writeConfig(baseConfig({ admin: { address: '0.0.0.0:0' } }));
    const r = spawnSync(process.execPath, [MAIN, 'start', '-c', file, '--state-dir', join(file, '..', 'st')], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 15000,
    });
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toContain('admin.address');
  });

  it('starts on a non-loopback admin address without a token only with admin.insecure, warning at start', async () => {
    const gw = await spawnGateway(baseConfig({ admin: { address: '0.0.0.0:0', insecure: true } }));
    cleanup.push(() => gw.stop());
    const warning = await waitFor(() => gw.output.find((l) => l.includes('admin.insecure')));
    expect(JSON.parse(warning).level).toBe(40);
  });

  it('aggregates /metrics over both workers and still answers while a worker restarts', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      cfg(up.address, { gateway: { name: 'adm', workers: 2, accessLog: { enabled: true } } }),
    );
    cleanup.push(() => gw.stop());
    for (let i = 0; i < 40; i++) {
      const a = new Agent();
      await (await request(`${gw.url}/m`, { dispatcher: a })).body.dump();
      await a.close();
    }
    // Both workers served some of the 40 (each access-log line carries its process id).
    const pids = await waitFor(() => {
      const lines = gw.output.flatMap((l) => {
        try {
          const j = JSON.parse(l);
          return j.type === 'access' ? [j.pid as number] : [];
        } catch {
          return [];
        }
      });
      return lines.length === 40 ? new Set(lines) : undefined;
    });
    expect(pids.size).toBe(2);
    const text = await (await request(`${gw.admin}/metrics`)).body.text();
    const line = text
      .split('\n')
      .find((l) => l.startsWith('meridian_downstream_rq_total{') && l.includes('route="app"') && l.includes('2xx'));
    expect(Number(line!.split(' ').at(-1))).toBe(40);
    // The latency histogram sums across workers too: +Inf bucket = count = 40.
    const series = (prefix: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(prefix))!
          .split(' ')
          .at(-1),
      );
    expect(series('meridian_upstream_rq_time_seconds_count{')).toBe(40);
    expect(text).toMatch(/meridian_upstream_rq_time_seconds_bucket\{[^}]*le="\+Inf"\} 40\n/);
    const [victim] = workerPids(gw.proc.pid!);
    process.kill(victim, 'SIGKILL');
    const during = await request(`${gw.admin}/metrics`);
    expect(during.statusCode).toBe(200);
    await during.body.dump();
  });

  it('updates and removes endpoints and shows an admin health override in the cluster status', async () => {
    const up = await upstream();
    const gw = await startInProcess(
      cfg(up.address, { gateway: { name: 'ep', workers: 1, accessLog: { enabled: false } } }),
    );
    cleanup.push(() => gw.stop());
    await (
      await request(`${gw.admin}/clusters/up/endpoints/127.0.0.1:9`, {
        method: 'PUT',
        body: JSON.stringify({ weight: 3 }),
      })
    ).body.dump();
    await (
      await request(`${gw.admin}/clusters/up/endpoints/${up.address}/health`, {
        method: 'POST',
        body: JSON.stringify({ status: 'draining' }),
      })
    ).body.dump();
    const status = await json(await request(`${gw.admin}/clusters/up/status`));
    expect(
      status.endpoints.map((e: { address: string; weight: number; flags: string[] }) => [e.address, e.weight, e.flags]),
    ).toEqual([
      [up.address, 1, ['draining']],
      ['127.0.0.1:9', 3, []],
    ]);
    const del = await request(`${gw.admin}/clusters/up/endpoints/127.0.0.1:9`, { method: 'DELETE' });
    expect(del.statusCode).toBe(200);
    await del.body.dump();
    expect((await json(await request(`${gw.admin}/clusters/up`))).endpoints).toHaveLength(1);
    expect((await request(`${gw.admin}/clusters/up/endpoints/9.9.9.9:9`, { method: 'DELETE' })).statusCode).toBe(404);
  });
  it('drops the metric series of a removed endpoint and a removed route', async () => {
    const [a, b] = [await upstream('a'), await upstream('b')];
    const gw = await startInProcess(
      baseConfig({
        gateway: { name: 'ms', workers: 1, accessLog: { enabled: false } },
        routes: [
          { name: 'gone', match: { path: { prefix: '/gone' } }, directResponse: { status: 200 } },
          { name: 'app', match: { path: { prefix: '/' } }, cluster: 'up' },
        ],
        clusters: [{ name: 'up', endpoints: [{ address: a.address }, { address: b.address }] }],
      }),
    );
    cleanup.push(() => gw.stop());
    for (let i = 0; i < 6; i++) await (await request(`${gw.url}/x`)).body.dump();
    await (await request(`${gw.url}/gone`)).body.dump();
    const series = async () =>
      (await (await request(`${gw.admin}/metrics`)).body.text()).split('\n').filter((l) => !l.startsWith('#'));
    const before = await series();
    expect(before.filter((l) => l.includes(`endpoint="${b.address}"`)).length).toBeGreaterThan(0);
    expect(before.some((l) => l.startsWith('meridian_downstream_rq_total{route="gone"'))).toBe(true);
    await (await request(`${gw.admin}/clusters/up/endpoints/${b.address}`, { method: 'DELETE' })).body.dump();
    await (await request(`${gw.admin}/routes/gone`, { method: 'DELETE' })).body.dump();
    const after = await series();
    expect(after.filter((l) => l.includes(`endpoint="${b.address}"`))).toEqual([]);
    expect(after.some((l) => l.startsWith('meridian_downstream_rq_total{route="gone"'))).toBe(false);
    expect(
      after.some((l) => l.startsWith('meridian_upstream_rq_total{') && l.includes(`endpoint="${a.address}"`)),
    ).toBe(true);
    expect(
      after.some(
        (l) => l.startsWith('meridian_upstream_rq_time_seconds_count{') && l.includes(`endpoint="${a.address}"`),
      ),
    ).toBe(true);
  });

  it('queues SIGHUP reloads behind concurrent admin writes: every write succeeds with its own version', async () => {
    const up = await upstream();
    const gw = await spawnGateway(cfg(up.address));
    cleanup.push(() => gw.stop());
    const writes = Array.from({ length: 12 }, (_, i) =>
      request(`${gw.admin}/routes/r${i}`, {
        method: 'PUT',
        body: JSON.stringify({ match: { path: { exact: `/r${i}` } }, directResponse: { status: 200, body: `r${i}` } }),
      }),
    );
    for (let i = 0; i < 4; i++) gw.proc.kill('SIGHUP');
    const results = await Promise.all(
      writes.map(async (w) => ({ status: (await w).statusCode, body: await json(await w) })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(12).fill(201));
    const versions = results.map((r) => r.body.version);
    expect(new Set(versions).size).toBe(12);
    await waitFor(() => gw.output.filter((l) => l.includes('config reloaded')).length >= 1, 5000);
    expect(gw.output.some((l) => l.includes('unhandled') || l.includes('ENOENT'))).toBe(false);
    const state = JSON.parse(readFileSync(join(gw.stateDir, 'state.json'), 'utf8')) as {
      versions: Array<{ version: number }>;
    };
    const stored = state.versions.map((v) => v.version);
    expect(new Set(stored).size).toBe(stored.length);
  });

  it('refuses config changes during a drain (503) so listeners are not re-bound', async () => {
    const up = await upstream();
    const gw = await spawnGateway(
      cfg(up.address, { gateway: { name: 'adm', workers: 1, accessLog: { enabled: false }, drainTimeout: '3s' } }),
    );
    cleanup.push(() => gw.stop());
    await (await request(`${gw.admin}/drain`, { method: 'POST' })).body.dump();
    const r = await request(`${gw.admin}/listeners/extra`, {
      method: 'PUT',
      body: JSON.stringify({ address: '127.0.0.1:0', protocol: 'http' }),
    });
    expect(r.statusCode).toBe(503);
    expect((await json(r)).error).toBe('draining');
  });
});

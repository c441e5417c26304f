// Hub replicas on one etcd (issue 22, slice 2), as real processes: one replica is elected (an etcd
// lease) to sign SVIDs and take CA rotation steps, and the other forwards those requests to it; both
// share the CA and the fleet's registrations, so gateways on different replicas reach each other
// over mTLS. SIGKILL of the elected replica: the other is elected within leaderTtl and signs, and a
// gateway watching the killed one moves to the other and gets the next change. SIGKILL of a replica
// under config churn loses no acknowledged write.
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { stringify } from 'yaml';
import { createCsr, generateKeyPair } from '../../src/common/x509-builder.js';
import { endChild } from '../helpers/child-process.js';
import { spawnMain, tempDir, waitFor, type MainProcess, type SpawnedGateway } from '../helpers/gateway.js';
import { closedPort } from '../helpers/upstream.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd-server.js';
import { startSvidGateway } from '../helpers/svid-fleet.js';

const TOKEN = 'fleet-token-0123';
const TD = 'mesh.example';
const HOST = 'app-b.mesh.internal';
const LEADER_TTL_MS = 2000;
const auth = { authorization: `Bearer ${TOKEN}` };

interface Replica {
  url: string;
  file: string;
  stateDir: string;
  proc?: MainProcess<unknown>;
}

let etcd: TestEtcd;
const replicas: Replica[] = [];
const gateways: SpawnedGateway[] = [];
let instance: http.Server;

async function startReplica(r: Replica): Promise<void> {
  r.proc = await spawnMain(['control-plane', '-c', r.file, '--state-dir', r.stateDir], `hub ${r.url}`);
}

async function api(r: Replica, path: string, init: { method?: string; body?: unknown } = {}) {
  const res = await request(`${r.url}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { ...auth, 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text };
}

/** The elected replica, once every live replica agrees on it. */
async function electedReplica(live: Replica[]): Promise<Replica> {
  let elected: Replica | undefined;
  await waitFor(
    async () => {
      const views = await Promise.all(live.map(async (r) => (await api(r, '/ca')).body));
      const winners = live.filter((_, i) => views[i].elected === true);
      elected = winners.length === 1 && views.every((v) => v.electedUrl === winners[0]!.url) ? winners[0] : undefined;
      return elected !== undefined;
    },
    15_000,
    100,
  );
  return elected!;
}

async function askSvid(r: Replica, gatewayId: string) {
  const csr = await createCsr(await generateKeyPair(), {
    commonName: gatewayId,
    uris: [`spiffe://${TD}/cluster/${gatewayId}/gateway/${gatewayId}`],
  });
  return api(r, `/v1/gateways/${gatewayId}/svid`, { method: 'POST', body: { csr } });
}

const issuedBy = (r: Replica) => r.proc!.output.filter((l) => l.includes('"msg":"issued an SVID"')).length;

beforeAll(async () => {
  etcd = await startEtcd();
  for (let i = 0; i < 2; i++) {
    const dir = tempDir(`meridian-hub-replica-${i}-`);
    const port = await closedPort();
    const r: Replica = { url: `http://127.0.0.1:${port}`, file: join(dir, 'hub.yaml'), stateDir: join(dir, 'state') };
    writeFileSync(
      r.file,
      stringify({
        hub: {
          address: `127.0.0.1:${port}`,
          tokens: [{ name: 'fleet', token: TOKEN }],
          ca: { trustDomain: TD, svidTtl: '1h' },
          store: { etcd: { endpoints: [etcd.url], prefix: '/meridian/replicas', timeout: '1s', leaderTtl: '2s' } },
        },
        virtualDestinations: [{ name: 'app-b', host: HOST, selector: { app: 'b' } }],
      }),
    );
    replicas.push(r);
  }
  await Promise.all(replicas.map(startReplica));
}, 60_000);

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await Promise.all(replicas.map((r) => endChild(r.proc?.proc, 'SIGTERM')));
  instance?.closeAllConnections();
  await new Promise((r) => instance?.close(r));
  await etcd?.stop();
});

describe('hub replicas on etcd', () => {
  it('elects one replica; both serve one CA; an SVID asked at either is signed by the elected one', async () => {
    const elected = await electedReplica(replicas);
    const other = replicas.find((r) => r !== elected)!;
    const bundles = await Promise.all(replicas.map(async (r) => (await api(r, '/ca/bundle')).body));
    expect(bundles[0]).toContain('BEGIN CERTIFICATE');
    expect(bundles[1]).toBe(bundles[0]);
    const [signedBefore, otherBefore] = [issuedBy(elected), issuedBy(other)];
    const viaOther = await askSvid(other, 'gw-x');
    expect(viaOther.status).toBe(200);
    const leaf = new X509Certificate(viaOther.body.certificate);
    expect(leaf.verify(new X509Certificate(bundles[0]).publicKey)).toBe(true);
    await waitFor(() => issuedBy(elected) === signedBefore + 1, 2000);
    expect(issuedBy(other)).toBe(otherBefore); // forwarded, not signed there
  });

  it('gateways on different replicas see each other (shared registrations) and talk over mTLS', async () => {
    instance = http.createServer((req, res) => res.end(`c-b ${req.headers['x-spiffe-id'] ?? '-'}`));
    await new Promise<void>((r) => instance.listen(0, '127.0.0.1', r));
    const port = (instance.address() as { port: number }).port;
    const [r0, r1] = replicas as [Replica, Replica];
    // Each one kept for afterAll as soon as it runs: a failure starting the second must not leak the first.
    gateways.push(await startSvidGateway('c-a', [], { url: r0.url, failoverUrls: [r1.url], token: TOKEN }));
    gateways.push(await startSvidGateway('c-b', [{ port }], { url: r1.url, failoverUrls: [r0.url], token: TOKEN }));
    await waitFor(
      async () => {
        const r = await request(`${gateways[0]!.url}/`, { headers: { host: HOST } });
        return r.statusCode === 200 && (await r.body.text()) === `c-b spiffe://${TD}/cluster/c-a/gateway/c-a`;
      },
      20_000,
      100,
    );
  }, 40_000);

  it('SIGKILL of the elected replica: the other is elected within leaderTtl and signs; gateways follow it and get the next change', async () => {
    const elected = await electedReplica(replicas);
    const survivor = replicas.find((r) => r !== elected)!;
    const killedAt = Date.now();
    await endChild(elected.proc!.proc, 'SIGKILL');
    await electedReplica([survivor]);
    const takeover = Date.now() - killedAt;
    expect(takeover).toBeLessThan(LEADER_TTL_MS + 3000);
    expect((await askSvid(survivor, 'gw-y')).status).toBe(200);
    // The next change reaches both gateways, whichever replica each was watching.
    const put = await api(survivor, '/routes/after-failover', {
      method: 'PUT',
      body: { match: { path: { exact: '/after-failover' } }, directResponse: { status: 204 } },
    });
    expect(put.status).toBe(200);
    for (const gw of gateways)
      await waitFor(async () => (await request(`${gw.url}/after-failover`)).statusCode === 204, 15_000, 100);
    // Both gateways' registrations now live on the survivor's lease: the virtual destination still
    // crosses from c-a to c-b after the killed replica's lease ran out (leaderTtl x 2).
    await new Promise((r) => setTimeout(r, 2 * LEADER_TTL_MS + 500));
    const crossing = await request(`${gateways[0]!.url}/`, { headers: { host: HOST } });
    expect(await crossing.body.text()).toBe(`c-b spiffe://${TD}/cluster/c-a/gateway/c-a`);
    const fleet = (await api(survivor, '/fleet')).body as { gateways: Array<{ id: string; inSync: boolean }> };
    expect(
      fleet.gateways
        .filter((g) => g.inSync)
        .map((g) => g.id)
        .sort(),
    ).toEqual(['c-a', 'c-b']);
    await startReplica(elected); // back for the next test
  }, 40_000);

  it('SIGKILL of a replica under config churn loses no acknowledged write', async () => {
    const acked: string[] = [];
    let n = 0;
    const churn = async (r: Replica, until: number) => {
      while (Date.now() < until) {
        const name = `churn-${n++}`;
        const res = await api(r, `/routes/${name}`, {
          method: 'PUT',
          body: { match: { path: { exact: `/${name}` } }, directResponse: { status: 204 } },
        }).catch(() => undefined);
        if (res?.status === 200) acked.push(name);
      }
    };
    const [r0, r1] = replicas as [Replica, Replica];
    const end = Date.now() + 3000;
    const victim = churn(r0, end);
    const other = churn(r1, end);
    await new Promise((r) => setTimeout(r, 1500)); // halfway through the churn
    await endChild(r0.proc!.proc, 'SIGKILL');
    await Promise.all([victim, other]);
    expect(acked.length).toBeGreaterThan(10);
    const names = new Set(((await api(r1, '/routes')).body as Array<{ name: string }>).map((r) => r.name));
    expect(acked.filter((a) => !names.has(a))).toEqual([]);
    // The killed replica, restarted on its own state, catches up with every acknowledged write.
    await startReplica(r0);
    await waitFor(async () => {
      const back = new Set(((await api(r0, '/routes')).body as Array<{ name: string }>).map((r) => r.name));
      return acked.every((a) => back.has(a));
    }, 15_000);
    // Under the number the other replica committed it as (versions are numbered in etcd, not per replica).
    const versionAt = async (r: Replica) => ((await api(r, '/fleet')).body as { version: number }).version;
    await waitFor(async () => (await versionAt(r0)) === (await versionAt(r1)), 5000);
  }, 40_000);
});

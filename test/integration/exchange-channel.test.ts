// Every finished exchange is published on diagnostics_channel 'meridian:exchange:finish' (as undici
// publishes its requests): a subscriber in the worker process sees each request's record once, with
// the status sent, whoever answered it. Without a subscriber nothing is published.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { baseConfig, startInProcess, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { okHandler, startUpstream } from '../helpers/upstream.js';
import type { FinishedExchange } from '../../src/observability/exchange-record.js';

let gw: InProcessGateway;
let up: Awaited<ReturnType<typeof startUpstream>>;
/** Holds every request: /hold answers nothing, /half sends its head and part of its body. */
let holding: http.Server;
const held: string[] = [];
const seen: Array<{ route: string; status: number; cluster?: string; host?: string; requestId: string }> = [];
const onFinish = (message: unknown) => {
  const { record, status } = message as FinishedExchange;
  seen.push({
    route: record.route.name,
    status,
    cluster: record.cluster?.name,
    host: record.host?.address,
    requestId: record.requestId,
  });
};

beforeAll(async () => {
  up = await startUpstream(okHandler('up'));
  holding = http.createServer((req, res) => {
    held.push(req.url!);
    if (req.url === '/half') {
      res.writeHead(200, { 'content-length': '10' });
      res.write('part');
    }
  });
  await new Promise<void>((r) => holding.listen(0, '127.0.0.1', r));
  gw = await startInProcess(
    baseConfig({
      routes: [
        { name: 'app', match: { path: { prefix: '/app' } }, cluster: 'up' },
        { name: 'hold', match: { path: { prefix: '/h' } }, cluster: 'holding' },
      ],
      clusters: [
        { name: 'up', endpoints: [{ address: up.address }] },
        { name: 'holding', endpoints: [{ address: `127.0.0.1:${(holding.address() as AddressInfo).port}` }] },
      ],
    }),
  );
});

afterAll(async () => {
  unsubscribe('meridian:exchange:finish', onFinish);
  await gw?.stop();
  await up?.close();
  holding?.closeAllConnections();
  await new Promise((r) => holding?.close(r));
});

describe("diagnostics_channel 'meridian:exchange:finish'", () => {
  it('publishes each finished exchange once, forwarded or answered by the gateway, with its status', async () => {
    await (await request(`${gw.url}/app/unseen`)).body.dump(); // before anyone subscribes
    subscribe('meridian:exchange:finish', onFinish);
    const ok = await request(`${gw.url}/app/x`, { headers: { 'x-request-id': 'req-1' } });
    await ok.body.dump();
    const missing = await request(`${gw.url}/nowhere`, { headers: { 'x-request-id': 'req-2' } });
    await missing.body.dump();
    await waitFor(() => seen.length >= 2, 2000);
    expect(seen).toEqual([
      { route: 'app', status: 200, cluster: 'up', host: up.address, requestId: 'req-1' },
      { route: '', status: 404, cluster: undefined, host: undefined, requestId: 'req-2' },
    ]);
  });

  it('a client gone before the response is logged with status 0 and downstream_disconnect (Envoy: code 0, DC); after the head, with its status', async () => {
    const gone: Array<{ requestId: string; status: number; error: string | undefined }> = [];
    const onGone = (message: unknown) => {
      const { record, status } = message as FinishedExchange;
      if (record.requestId.startsWith('gone-')) gone.push({ requestId: record.requestId, status, error: record.error });
    };
    subscribe('meridian:exchange:finish', onGone);
    try {
      for (const [path, id] of [
        ['/hold', 'gone-1'],
        ['/half', 'gone-2'],
      ]) {
        const client = connect(Number(new URL(gw.url).port), '127.0.0.1');
        client.on('error', () => {});
        client.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${id}\r\n\r\n`);
        const received = held.length + 1;
        await waitFor(() => held.length >= received, 5000);
        if (path === '/half') await new Promise((r) => client.once('data', r)); // the head reached the client
        client.destroy();
      }
      await waitFor(() => gone.length >= 2, 5000);
      expect(gone).toEqual([
        { requestId: 'gone-1', status: 0, error: 'downstream_disconnect' },
        { requestId: 'gone-2', status: 200, error: 'downstream_disconnect' },
      ]);
      const metrics = await (await request(`${gw.admin}/metrics`)).body.text();
      expect(metrics).toContain('meridian_downstream_rq_total{route="hold",status_class="0xx"} 1');
      expect(metrics).toContain('meridian_downstream_rq_total{route="hold",status_class="2xx"} 1');
    } finally {
      unsubscribe('meridian:exchange:finish', onGone);
    }
  });
});

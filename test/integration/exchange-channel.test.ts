// Every finished exchange is published on diagnostics_channel 'meridian:exchange:finish' (as undici
// publishes its requests): a subscriber in the worker process sees each request's record once, with
// the status sent, whoever answered it. Without a subscriber nothing is published.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { baseConfig, startInProcess, waitFor, type InProcessGateway } from '../helpers/gateway.js';
import { okHandler, startUpstream } from '../helpers/upstream.js';
import type { FinishedExchange } from '../../src/observability/exchange-record.js';

let gw: InProcessGateway;
let up: Awaited<ReturnType<typeof startUpstream>>;
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
  gw = await startInProcess(
    baseConfig({
      routes: [{ name: 'app', match: { path: { prefix: '/app' } }, cluster: 'up' }],
      clusters: [{ name: 'up', endpoints: [{ address: up.address }] }],
    }),
  );
});

afterAll(async () => {
  unsubscribe('meridian:exchange:finish', onFinish);
  await gw?.stop();
  await up?.close();
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
});

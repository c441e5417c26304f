import net from 'node:net';
import { readSni } from './client-hello.js';
import { counter } from '../observability/metrics.js';

const MAX_HELLO = 16 * 1024 + 5;
const HELLO_TIMEOUT_MS = 10_000;
const refused = counter('meridian_tls_passthrough_refused_total', 'Passthrough connections refused before proxying', [
  'listener',
  'reason',
]);

/** Where to send a passthrough connection for an SNI name, or a reason to refuse. */
export type SniResolver = (sni: string) => { hostname: string; port: number; done(): void } | string;

/**
 * `protocol: tls-passthrough`: route raw TLS by the SNI of the ClientHello to a cluster endpoint and
 * splice the bytes, without terminating TLS (the east-west "controlled gateway between networks").
 */
export function createPassthroughServer(listener: string, resolve: SniResolver): net.Server {
  return net.createServer({ noDelay: true }, (client) => {
    let buffered = Buffer.alloc(0);
    client.setTimeout(HELLO_TIMEOUT_MS, () => client.destroy());
    client.on('error', () => client.destroy());
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const sni = readSni(buffered);
      if (sni === undefined && buffered.length < MAX_HELLO) return;
      client.off('data', onData);
      client.pause();
      const target = sni ? resolve(sni) : 'no_sni';
      if (typeof target === 'string') {
        refused.labels(listener, target).inc();
        return void client.destroy();
      }
      client.setTimeout(0);
      splice(client, target, buffered);
    };
    client.on('data', onData);
  });
}

function splice(client: net.Socket, target: { hostname: string; port: number; done(): void }, hello: Buffer) {
  const upstream = net.connect({ host: target.hostname, port: target.port, noDelay: true });
  upstream.on('connect', () => {
    upstream.write(hello);
    client.pipe(upstream).pipe(client);
    client.resume();
  });
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    target.done();
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', finish);
  upstream.on('close', finish);
  client.on('close', finish);
}

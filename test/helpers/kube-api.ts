import https from 'node:https';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { CertAuthority } from './certs.js';

/**
 * A stand-in Kubernetes API server for EndpointSlices (the real one cannot run here): HTTPS with a
 * throwaway CA, bearer-token auth, and the real wire format of `discovery.k8s.io/v1`:
 *
 * - `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=kubernetes.io/service-name=X`
 *   returns an EndpointSliceList whose `metadata.resourceVersion` is the store's current version;
 * - with `watch=1&resourceVersion=N` it streams one JSON watch event per line: every change after N,
 *   then each new one as the test makes it; `allowWatchBookmarks=true` lets {@link bookmark} reach it.
 *   A version older than the last {@link expire} is answered as the API server does when etcd
 *   compacted it: an ERROR event carrying a `Status` with code 410 and reason "Expired", then the end
 *   of the stream (or, with `expiredAs: 'http'`, a 410 response carrying the Status).
 *
 * Only the equality label selector on `kubernetes.io/service-name` is understood, which is all the
 * gateway sends. Every change bumps one store-wide resourceVersion, as etcd's revision does.
 */
export class KubeApiServer {
  readonly token = 'meridian-test-token';
  /** Every request's method, path with query, and Authorization header, in order. */
  readonly requests: Array<{ url: string; authorization: string | undefined; watch: boolean }> = [];
  /** How an expired resourceVersion is refused: an ERROR event in a 200 stream (the API server's usual way) or a 410 response. */
  expiredAs: 'event' | 'http' = 'event';
  /** Refuse every watch as expired, even from the version a list just returned (a misbehaving server or proxy). */
  expireEveryWatch = false;
  port = 0;
  readonly #ca: CertAuthority;
  readonly #dir: string;
  readonly #server: https.Server;
  readonly #sockets = new Set<Socket>();
  readonly #watches = new Set<{ namespace: string; service: string; bookmarks: boolean; response: http.ServerResponse }>();
  /** Current slices by namespace/name. */
  readonly #slices = new Map<string, V1EndpointSlice>();
  /** Every change, for watches that resume from an older version. */
  readonly #history: Array<{ resourceVersion: number; type: 'ADDED' | 'MODIFIED' | 'DELETED'; slice: V1EndpointSlice }> = [];
  #resourceVersion = 1000;
  /** Watches from a version below this get 410 Gone (watching from the current version stays possible). */
  #compactedBelow = 0;

  private constructor() {
    this.#dir = mkdtempSync(join(tmpdir(), 'kube-api-'));
    this.#ca = new CertAuthority(this.#dir, 'kube-ca');
    const cert = this.#ca.issue({ name: 'apiserver', san: ['IP:127.0.0.1', 'DNS:localhost'], eku: 'serverAuth' });
    this.#server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => this.#handle(req, res));
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(): Promise<KubeApiServer> {
    const api = new KubeApiServer();
    await api.#listen();
    return api;
  }

  get resourceVersion(): string {
    return String(this.#resourceVersion);
  }

  /** List requests (not watches) so far. */
  get lists(): number {
    return this.requests.filter((r) => !r.watch).length;
  }

  /** Watches currently open. */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** Write a kubeconfig (YAML) for this server: its CA, a bearer token; returns its path. */
  writeKubeconfig(token = this.token): string {
    const file = join(this.#dir, `kubeconfig-${token}.yaml`);
    writeFileSync(file, [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: test',
      '  cluster:',
      `    server: https://127.0.0.1:${this.port}`,
      `    certificate-authority-data: ${Buffer.from(this.#ca.certPem).toString('base64')}`,
      'users:',
      '- name: meridian',
      '  user:',
      `    token: ${token}`,
      'contexts:',
      '- name: test',
      '  context: { cluster: test, user: meridian }',
      'current-context: test',
      '',
    ].join('\n'));
    return file;
  }

  /** Create or replace a slice (ADDED or MODIFIED), stamping its namespace, resourceVersion and service label. */
  apply(namespace: string, service: string, slice: V1EndpointSlice): void {
    const key = `${namespace}/${slice.metadata!.name}`;
    const type = this.#slices.has(key) ? 'MODIFIED' : 'ADDED';
    const stored: V1EndpointSlice = structuredClone({
      ...slice,
      metadata: { ...slice.metadata, namespace, resourceVersion: String(++this.#resourceVersion), labels: { ...slice.metadata?.labels, 'kubernetes.io/service-name': service } },
    });
    this.#slices.set(key, stored);
    this.#record(type, stored);
  }

  delete(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const slice = this.#slices.get(key);
    if (!slice) throw new Error(`no slice ${key}`);
    this.#slices.delete(key);
    this.#record('DELETED', { ...slice, metadata: { ...slice.metadata, resourceVersion: String(++this.#resourceVersion) } });
  }

  /** Send a BOOKMARK with the current version to every watch that allowed bookmarks. */
  bookmark(): void {
    const event = { type: 'BOOKMARK', object: { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: this.resourceVersion, annotations: { 'k8s.io/initial-events-end': 'true' } } } };
    for (const w of this.#watches) if (w.bookmarks) w.response.write(`${JSON.stringify(event)}\n`);
  }

  /**
   * Compact the history: every version before now is gone. Open watches get the 410 ERROR event and
   * are closed, as the API server ends a watch whose window fell behind.
   */
  expire(): void {
    this.#compactedBelow = this.#resourceVersion;
    this.#history.length = 0;
    for (const w of [...this.#watches]) {
      this.#watches.delete(w);
      this.#refuseExpired(w.response);
    }
  }

  /** Cut every open watch connection (a reset, not a clean end), as a restarting API server or an idle-timeout proxy does. */
  dropWatches(): void {
    for (const w of [...this.#watches]) w.response.socket?.destroy();
  }

  /** Go away: stop listening and cut every connection; the port stays reserved for {@link resume}. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Come back on the same port with the same store. */
  async resume(): Promise<void> {
    await this.#listen();
  }

  async close(): Promise<void> {
    if (this.#server.listening) await this.down();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  #listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        this.port = (this.#server.address() as { port: number }).port;
        resolve();
      });
    });
  }

  #record(type: 'ADDED' | 'MODIFIED' | 'DELETED', slice: V1EndpointSlice): void {
    this.#history.push({ resourceVersion: this.#resourceVersion, type, slice });
    const namespace = slice.metadata!.namespace!;
    const service = slice.metadata!.labels!['kubernetes.io/service-name'];
    for (const w of this.#watches) {
      if (w.namespace === namespace && w.service === service) w.response.write(`${JSON.stringify({ type, object: slice })}\n`);
    }
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const watch = url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true';
    this.requests.push({ url: req.url ?? '', authorization: req.headers.authorization, watch });
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(res, 401, 'Unauthorized', 'Unauthorized');
    const path = /^\/apis\/discovery\.k8s\.io\/v1\/namespaces\/([^/]+)\/endpointslices$/.exec(url.pathname);
    if (!path || req.method !== 'GET') return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const namespace = path[1];
    const selector = /^kubernetes\.io\/service-name=([a-z0-9-]+)$/.exec(url.searchParams.get('labelSelector') ?? '');
    if (!selector) return status(res, 400, 'BadRequest', 'the stand-in understands only labelSelector=kubernetes.io/service-name=NAME');
    const service = selector[1];
    const matches = (s: V1EndpointSlice) => s.metadata!.namespace === namespace && s.metadata!.labels!['kubernetes.io/service-name'] === service;

    if (!watch) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'EndpointSliceList', apiVersion: 'discovery.k8s.io/v1', metadata: { resourceVersion: this.resourceVersion }, items: [...this.#slices.values()].filter(matches) }));
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    if (from < this.#compactedBelow || this.expireEveryWatch) {
      if (this.expiredAs === 'http') return status(res, 410, 'Expired', `too old resource version: ${from} (${this.#compactedBelow})`);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      return this.#refuseExpired(res, from);
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    for (const change of this.#history) {
      if (change.resourceVersion > from && matches(change.slice)) res.write(`${JSON.stringify({ type: change.type, object: change.slice })}\n`);
    }
    const entry = { namespace, service, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true', response: res };
    this.#watches.add(entry);
    res.on('close', () => this.#watches.delete(entry));
  }

  #refuseExpired(res: http.ServerResponse, from?: number): void {
    const object = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from ?? 'watched'} (${this.#compactedBelow})`, reason: 'Expired', code: 410 };
    res.end(`${JSON.stringify({ type: 'ERROR', object })}\n`);
  }
}

function status(res: http.ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

import https from 'node:https';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { CertAuthority } from './certs.js';

/**
 * A stand-in Kubernetes API server (the real one cannot run here): HTTPS with a throwaway CA,
 * bearer-token auth, and the real wire format for any collection it is given objects of
 * (`/api/v1/...` core, `/apis/GROUP/VERSION/...` others):
 *
 * - `GET {prefix}/{resource}` (every namespace) or `{prefix}/namespaces/{ns}/{resource}` returns a
 *   `<Kind>List` whose `metadata.resourceVersion` is the store's current version; `labelSelector` with
 *   equality terms (`a=b,c=d`) and `fieldSelector=type=X` (Secrets) filter it;
 * - with `watch=1&resourceVersion=N` it streams one JSON watch event per line: every change after N,
 *   then each new one as the test makes it; `allowWatchBookmarks=true` lets {@link bookmark} reach it.
 *   A version older than the last {@link expire} is answered as the API server does when etcd
 *   compacted it: an ERROR event carrying a `Status` with code 410 and reason "Expired", then the end
 *   of the stream (or, with `expiredAs: 'http'`, a 410 response carrying the Status);
 * - `PUT .../{name}/status` replaces an object's status (the status subresource): 409 Conflict when
 *   the body's `metadata.resourceVersion` is not the stored one, as optimistic concurrency requires;
 *   the write bumps the version and reaches watches as MODIFIED. `generation` is stamped (1, bumped
 *   when `spec` changes) and kept across status writes.
 *
 * Every change bumps one store-wide resourceVersion, as etcd's revision does.
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
  readonly #watches = new Set<{
    collection: string;
    matches: (o: KubeObject) => boolean;
    bookmarks: boolean;
    response: http.ServerResponse;
  }>();
  /** Current objects by collection ("/apis/discovery.k8s.io/v1/endpointslices"), then "namespace/name". */
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  /** Every change, for watches that resume from an older version. */
  readonly #history: Array<{
    resourceVersion: number;
    type: 'ADDED' | 'MODIFIED' | 'DELETED';
    collection: string;
    object: KubeObject;
  }> = [];
  /** Status writes received, in order: collection, namespace/name and the status written. */
  readonly statusWrites: Array<{ collection: string; key: string; status: unknown }> = [];
  /** Answer the next N status writes with 409 Conflict whatever their version (a concurrent writer). */
  conflictNextStatusWrites = 0;
  #resourceVersion = 1000;
  #uids = 0;
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
    writeFileSync(
      file,
      [
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
      ].join('\n'),
    );
    return file;
  }

  /** Create or replace a slice (ADDED or MODIFIED), stamping its namespace, resourceVersion and service label. */
  apply(namespace: string, service: string, slice: V1EndpointSlice): void {
    this.put(ENDPOINT_SLICES, {
      ...slice,
      metadata: {
        ...slice.metadata,
        name: slice.metadata!.name!,
        namespace,
        labels: { ...slice.metadata?.labels, 'kubernetes.io/service-name': service },
      },
    } as KubeObject);
  }

  delete(namespace: string, name: string): void {
    this.remove(ENDPOINT_SLICES, namespace, name);
  }

  /**
   * Create or replace any object of a collection (`/apis/gateway.networking.k8s.io/v1/httproutes`,
   * `/api/v1/services`): stamps resourceVersion, uid, creationTimestamp (kept on replace) and
   * generation (bumped when spec changes); a replace keeps the stored status unless one is given.
   */
  put(collection: string, object: KubeObject): KubeObject {
    const store = this.#store(collection);
    const key = `${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    const before = store.get(key);
    const specChanged = !before || JSON.stringify(before.spec) !== JSON.stringify(object.spec);
    const stored: KubeObject = structuredClone({
      ...object,
      ...(object.status === undefined && before?.status !== undefined ? { status: before.status } : {}),
      metadata: {
        ...object.metadata,
        uid: before?.metadata.uid ?? `uid-${++this.#uids}`,
        creationTimestamp:
          before?.metadata.creationTimestamp ??
          object.metadata.creationTimestamp ??
          new Date(Date.UTC(2026, 0, 1) + this.#uids * 1000).toISOString(),
        generation: (before?.metadata.generation ?? 0) + (specChanged ? 1 : 0),
        resourceVersion: String(++this.#resourceVersion),
      },
    });
    store.set(key, stored);
    this.#record(before ? 'MODIFIED' : 'ADDED', collection, stored);
    return stored;
  }

  /** Delete an object of a collection (DELETED). */
  remove(collection: string, namespace: string | undefined, name: string): void {
    const store = this.#store(collection);
    const key = `${namespace ?? ''}/${name}`;
    const object = store.get(key);
    if (!object) throw new Error(`no ${collection} ${key}`);
    store.delete(key);
    this.#record('DELETED', collection, {
      ...object,
      metadata: { ...object.metadata, resourceVersion: String(++this.#resourceVersion) },
    });
  }

  /** The stored object (with the status the gateway wrote), or undefined. */
  get(collection: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#objects.get(collection)?.get(`${namespace ?? ''}/${name}`);
  }

  /** Every stored object of a collection. */
  list(collection: string): KubeObject[] {
    return [...(this.#objects.get(collection)?.values() ?? [])];
  }

  /** Send a BOOKMARK with the current version to every watch that allowed bookmarks. */
  bookmark(): void {
    const event = {
      type: 'BOOKMARK',
      object: {
        kind: 'EndpointSlice',
        apiVersion: 'discovery.k8s.io/v1',
        metadata: { resourceVersion: this.resourceVersion, annotations: { 'k8s.io/initial-events-end': 'true' } },
      },
    };
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

  #store(collection: string): Map<string, KubeObject> {
    let store = this.#objects.get(collection);
    if (!store) this.#objects.set(collection, (store = new Map()));
    return store;
  }

  #record(type: 'ADDED' | 'MODIFIED' | 'DELETED', collection: string, object: KubeObject): void {
    this.#history.push({ resourceVersion: this.#resourceVersion, type, collection, object });
    for (const w of this.#watches) {
      if (w.collection === collection && w.matches(object)) w.response.write(`${JSON.stringify({ type, object })}\n`);
    }
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const watch = url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true';
    this.requests.push({ url: req.url ?? '', authorization: req.headers.authorization, watch });
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(res, 401, 'Unauthorized', 'Unauthorized');
    // {prefix}[/namespaces/{ns}]/{resource}[/{name}[/status]]
    const path = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+)(\/status)?)?$/.exec(
      url.pathname,
    );
    if (!path) return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const [, prefix, namespace, resource, name, statusPath] = path;
    const collection = `${prefix}/${resource}`;
    if (req.method === 'PUT' && name && statusPath) return this.#writeStatus(req, res, collection, namespace, name);
    if (req.method === 'GET' && name && !statusPath) {
      const object = this.get(collection, namespace, name);
      if (!object) return status(res, 404, 'NotFound', `${resource} "${name}" not found`);
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(object));
    }
    if (req.method !== 'GET' || name)
      return status(
        res,
        405,
        'MethodNotAllowed',
        `the stand-in serves get, list, watch and status writes (${req.method} ${url.pathname})`,
      );
    const labels = parseSelector(url.searchParams.get('labelSelector'));
    const fields = parseSelector(url.searchParams.get('fieldSelector'));
    if (!labels || !fields) return status(res, 400, 'BadRequest', 'the stand-in understands only equality selectors');
    const matches = (o: KubeObject) =>
      (!namespace || o.metadata.namespace === namespace) &&
      Object.entries(labels).every(([k, v]) => o.metadata.labels?.[k] === v) &&
      Object.entries(fields).every(([k, v]) => k === 'type' && (o as { type?: string }).type === v);

    if (!watch) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: `${KINDS[resource] ?? resource}List`,
          apiVersion: prefix.replace(/^\/apis?\//, ''),
          metadata: { resourceVersion: this.resourceVersion },
          items: [...this.#store(collection).values()].filter(matches),
        }),
      );
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    if (from < this.#compactedBelow || this.expireEveryWatch) {
      if (this.expiredAs === 'http')
        return status(res, 410, 'Expired', `too old resource version: ${from} (${this.#compactedBelow})`);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      return this.#refuseExpired(res, from);
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    for (const change of this.#history) {
      if (change.resourceVersion > from && change.collection === collection && matches(change.object))
        res.write(`${JSON.stringify({ type: change.type, object: change.object })}\n`);
    }
    const entry = {
      collection,
      matches,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
      response: res,
    };
    this.#watches.add(entry);
    res.on('close', () => this.#watches.delete(entry));
  }

  #writeStatus(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    collection: string,
    namespace: string | undefined,
    name: string,
  ): void {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      const key = `${namespace ?? ''}/${name}`;
      const stored = this.#objects.get(collection)?.get(key);
      if (!stored) return status(res, 404, 'NotFound', `${collection} ${key} not found`);
      const body = JSON.parse(text) as KubeObject;
      if (this.conflictNextStatusWrites > 0 || body.metadata?.resourceVersion !== stored.metadata.resourceVersion) {
        if (this.conflictNextStatusWrites > 0) this.conflictNextStatusWrites--;
        return status(
          res,
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${collection} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      const updated: KubeObject = {
        ...stored,
        status: body.status,
        metadata: { ...stored.metadata, resourceVersion: String(++this.#resourceVersion) },
      };
      this.#store(collection).set(key, updated);
      this.statusWrites.push({ collection, key, status: body.status });
      this.#record('MODIFIED', collection, updated);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(updated));
    });
  }

  #refuseExpired(res: http.ServerResponse, from?: number): void {
    const object = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `too old resource version: ${from ?? 'watched'} (${this.#compactedBelow})`,
      reason: 'Expired',
      code: 410,
    };
    res.end(`${JSON.stringify({ type: 'ERROR', object })}\n`);
  }
}

/** An object as stored: any kind, with the metadata the stand-in stamps. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    creationTimestamp?: string;
    [k: string]: unknown;
  };
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
}

export const ENDPOINT_SLICES = '/apis/discovery.k8s.io/v1/endpointslices';

/** List kinds by resource, for the `<Kind>List` a list answers with. */
const KINDS: Record<string, string> = {
  endpointslices: 'EndpointSlice',
  services: 'Service',
  secrets: 'Secret',
  namespaces: 'Namespace',
  gatewayclasses: 'GatewayClass',
  gateways: 'Gateway',
  httproutes: 'HTTPRoute',
  referencegrants: 'ReferenceGrant',
};

/** `a=b,c=d` -> {a: b, c: d}; undefined for anything else (set-based selectors are not understood). */
function parseSelector(selector: string | null): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  if (!selector) return out;
  for (const term of selector.split(',')) {
    const m = /^([A-Za-z0-9./_-]+)==?([A-Za-z0-9._/-]*)$/.exec(term);
    if (!m) return undefined;
    out[m[1]] = m[2];
  }
  return out;
}

function status(res: http.ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

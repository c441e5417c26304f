import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { ApiError } from '../api-error.js';
import type { AddressInfo } from 'node:net';
import type { Config } from '../../config/schema/index.js';
import { validateConfig } from '../../config/validate.js';
import { formatAddress, isLoopbackHost, splitAddress } from '../../common/address.js';
import { msOf } from '../../config/duration.js';
import type { Primary } from '../../process/primary.js';
import { registry } from '../../observability/metrics.js';
import { logger } from '../../observability/logger.js';
import { authenticate } from './auth.js';
import type { ConfigChanges } from '../config-service.js';
import { readBody, sendJson } from './http-util.js';
import { pathParts, probePath } from './request-path.js';
import { deleteResource, endpointsOf, findResource, putResource, type ResourceKind } from './resources.js';
import { clusterStatus, type ClusterDetails, type HostDetails } from './cluster-status.js';
import { redactSecrets, withSecrets } from './secrets.js';
import { serveUi } from './ui-assets.js';

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  who: string;
  parts: string[];
  ifMatch: string | undefined;
}

/** What the gateway's wiring gives its admin API. */
export interface AdminOptions {
  /** The config change path (built once, in the wiring). */
  changes: ConfigChanges;
  /** Per-endpoint facts added to GET /clusters/{name}/status (health checks, ejections). */
  hostDetails?: HostDetails[];
  /** Extra per-cluster facts for its status (a discovery source's state). */
  clusterDetails?: ClusterDetails[];
  /** Extra readiness facts (e.g. Redis state, the hub connection) merged into /ready. */
  readiness?: Array<() => Record<string, unknown>>;
  /**
   * Refuse a change to a resource with 409, with this message (e.g. resources owned by the
   * management server on a managed gateway). `kind` is clusters | routes | listeners | config.
   */
  writeGuard?: (kind: string, name: string | undefined) => string | undefined;
}

/** The management API of one gateway (and its read-only ops variant): a source of config changes. */
export class AdminServer {
  readonly #primary: Primary;
  readonly #changes: ConfigChanges;
  readonly #hostDetails: HostDetails[];
  readonly #clusterDetails: ClusterDetails[];
  readonly #readiness: Array<() => Record<string, unknown>>;
  readonly #writeGuard: AdminOptions['writeGuard'];
  readonly #servers: http.Server[] = [];
  draining = false;

  constructor(primary: Primary, opts: AdminOptions) {
    this.#primary = primary;
    this.#changes = opts.changes;
    this.#hostDetails = opts.hostDetails ?? [];
    this.#clusterDetails = opts.clusterDetails ?? [];
    this.#readiness = opts.readiness ?? [];
    this.#writeGuard = opts.writeGuard;
  }

  /** Bind the admin API; and the ops listener when `admin.opsAddress` is set. Returns bound addresses. */
  async listen(admin: Config['admin']): Promise<{ admin: string; ops?: string }> {
    if (!isLoopbackHost(splitAddress(admin.address).host) && !admin.token && !admin.tokens?.length) {
      logger.warn(
        { address: admin.address },
        'admin.insecure: the admin API is served WITHOUT authentication on a non-loopback address: anyone who reaches it can change the config',
      );
    }
    const a = await this.#bind(admin.address, false);
    const ops = admin.opsAddress ? await this.#bind(admin.opsAddress, true) : undefined;
    return { admin: a, ops };
  }

  async #bind(address: string, opsOnly: boolean): Promise<string> {
    const server = http.createServer((req, res) => void this.#handle(req, res, opsOnly));
    const { host, port } = splitAddress(address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.#servers.push(server);
    const a = server.address() as AddressInfo;
    return formatAddress(a.address, a.port);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise((r) => {
            s.close(r);
            s.closeAllConnections();
          }),
      ),
    );
  }

  async #handle(req: IncomingMessage, res: ServerResponse, opsOnly: boolean) {
    try {
      // Probes answer without credentials, on their exact paths only; everything else is authenticated
      // before the path is even parsed, so a caller without a token learns nothing of which paths exist.
      const probe = probePath(req.url);
      if (probe === 'live') return sendJson(res, 200, { live: true });
      if (probe === 'ready') return this.#ready(res);
      let who = 'ops';
      if (!opsOnly) {
        const auth = authenticate(req, this.#primary.current.config.admin);
        if (!auth.ok)
          return sendJson(
            res,
            auth.status,
            { error: auth.status === 401 ? 'unauthenticated' : 'forbidden' },
            auth.status === 401 ? { 'www-authenticate': 'Bearer realm="meridian-admin"' } : {},
          );
        who = auth.who;
      }
      const url = new URL(req.url ?? '/', 'http://admin');
      const parts = pathParts(url.pathname);
      const head = parts[0] ?? '';
      if (opsOnly && head !== 'metrics')
        return sendJson(res, 404, {
          error: 'not_found',
          message: 'the ops listener serves only /ready, /live and /metrics',
        });
      if (head === 'metrics' && req.method === 'GET') return this.#metrics(res);
      if (head === 'ui') return serveUi(res, req.method, url.pathname);
      const call: Call = { req, res, who, parts, ifMatch: req.headers['if-match'] };
      if (await this.#route(call)) return;
      sendJson(res, 404, { error: 'not_found', message: `no admin route for ${req.method} ${url.pathname}` });
    } catch (e) {
      if (e instanceof ApiError) return sendJson(res, e.status, e.body ?? { error: e.message });
      logger.error({ err: e }, 'admin request failed');
      sendJson(res, 500, { error: 'internal_error', message: (e as Error).message });
    }
  }

  #ready(res: ServerResponse) {
    const extra = Object.assign({}, ...this.#readiness.map((f) => f()));
    const ready = !this.draining && this.#primary.links.size > 0;
    sendJson(res, ready ? 200 : 503, {
      ready,
      draining: this.draining,
      version: this.#primary.current.version,
      workers: this.#primary.links.size,
      ...extra,
    });
  }

  async #metrics(res: ServerResponse) {
    const text = await (await this.#primary.metrics()).metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(text);
  }

  #guard(kind: string, name: string | undefined) {
    const refusal = this.#writeGuard?.(kind, name);
    if (refusal) throw new ApiError(409, 'conflict', { error: 'managed_resource', message: refusal });
  }

  async #route(c: Call): Promise<boolean> {
    const [head, name, sub, addr, leaf] = c.parts;
    const m = c.req.method;
    if (
      m !== 'GET' &&
      m !== 'HEAD' &&
      (head === 'clusters' || head === 'routes' || head === 'listeners' || (head === 'config' && name !== 'validate'))
    )
      this.#guard(head, name);
    if (head === 'config') return this.#config(c, name);
    if (head === 'drain' && m === 'POST') return this.#drain(c);
    if (head === 'certificates' && name === 'reload' && m === 'POST') {
      const replies = await this.#primary.collect<{ t: 'certs-reply'; id: number; failed: string[] }>(
        'reload-certs',
        5000,
      );
      const failed = [...new Set(replies.flatMap((r) => r.failed))];
      return (
        void sendJson(c.res, failed.length ? 500 : 200, {
          reloaded: failed.length === 0,
          workers: replies.length,
          failed,
        }),
        true
      );
    }
    if (head !== 'clusters' && head !== 'routes' && head !== 'listeners') return false;
    const kind = head as ResourceKind;
    const cfg = this.#changes.current.config;
    if (!name && m === 'GET') return (void sendJson(c.res, 200, cfg[kind], etag(this.#changes)), true);
    if (!name) return false;
    if (kind === 'clusters' && sub === 'status' && m === 'GET')
      return (
        void sendJson(c.res, 200, await clusterStatus(this.#primary, name, this.#hostDetails, this.#clusterDetails)),
        true
      );
    if (kind === 'clusters' && sub === 'endpoints' && addr) return this.#endpoint(c, name, addr, leaf);
    if (sub) return false;
    if (m === 'GET') return (void sendJson(c.res, 200, findResource(cfg, kind, name), etag(this.#changes)), true);
    if (m === 'PUT') {
      const body = await readBody(c.req);
      let created = false;
      const r = await this.#changes.change(
        c.who,
        `put ${kind}/${name}`,
        c.ifMatch,
        (d) => void (created = putResource(d, kind, name, body)),
      );
      return (void sendJson(c.res, created ? 201 : 200, r, { etag: `"${r.version}"` }), true);
    }
    if (m === 'DELETE') {
      const r = await this.#changes.change(c.who, `delete ${kind}/${name}`, c.ifMatch, (d) =>
        deleteResource(d, kind, name),
      );
      return (void sendJson(c.res, 200, r, { etag: `"${r.version}"` }), true);
    }
    return false;
  }

  async #config(c: Call, sub: string | undefined): Promise<boolean> {
    const m = c.req.method;
    if (!sub && m === 'GET')
      return (void sendJson(c.res, 200, redactSecrets(this.#changes.current.config), etag(this.#changes)), true);
    if (!sub && m === 'PUT') {
      const body = await readBody(c.req);
      const r = await this.#changes.change(c.who, 'replace config', c.ifMatch, (draft) => withSecrets(body, draft));
      return (void sendJson(c.res, 200, r, { etag: `"${r.version}"` }), true);
    }
    if (sub === 'validate' && m === 'POST') {
      const v = validateConfig(withSecrets(await readBody(c.req), this.#changes.current.config));
      return (
        void sendJson(c.res, v.ok ? 200 : 400, v.ok ? { valid: true } : { valid: false, errors: v.errors }), true
      );
    }
    if (sub === 'versions' && m === 'GET' && c.parts[2] === undefined)
      return (void sendJson(c.res, 200, this.#primary.store.list()), true);
    if (sub === 'versions' && m === 'GET' && c.parts[3] === undefined) return this.#version(c, c.parts[2]);
    if (sub === 'rollback' && m === 'POST') {
      const body = (await readBody(c.req)) as { version?: unknown } | undefined;
      const target = this.#primary.store.get(Number(body?.version));
      if (!target)
        throw new ApiError(404, 'unknown version', {
          error: 'not_found',
          message: `version ${String(body?.version)} is not in the history`,
        });
      const r = await this.#changes.change(
        c.who,
        `rollback to ${target.version}`,
        c.ifMatch,
        () => structuredClone(target.config) as Config,
        `rollback:${target.version}`,
      );
      return (void sendJson(c.res, 200, { ...r, restored: target.version }, { etag: `"${r.version}"` }), true);
    }
    return false;
  }

  /** One stored version with its config (secrets redacted, as on GET /config): what the UI diffs. */
  #version(c: Call, wanted: string): boolean {
    const stored = /^\d+$/.test(wanted) ? this.#primary.store.get(Number(wanted)) : undefined;
    if (!stored)
      throw new ApiError(404, 'unknown version', {
        error: 'not_found',
        message: `version ${wanted} is not in the history`,
      });
    const current = this.#primary.store.current?.version === stored.version;
    sendJson(c.res, 200, { ...stored, current, config: redactSecrets(stored.config) });
    return true;
  }

  async #endpoint(c: Call, cluster: string, address: string, leaf: string | undefined): Promise<boolean> {
    const m = c.req.method;
    const action = `${m} clusters/${cluster}/endpoints/${address}${leaf ? `/${leaf}` : ''}`;
    if (leaf === 'health' && m === 'POST') {
      const body = (await readBody(c.req)) as { status?: string } | undefined;
      const r = await this.#changes.change(c.who, action, c.ifMatch, (d) => {
        const ep = endpointsOf(d, cluster).find((e) => e.address === address);
        if (!ep)
          throw new ApiError(404, 'not found', {
            error: 'not_found',
            message: `endpoint ${address} is not in cluster ${cluster}`,
          });
        (ep as { health?: string }).health = body?.status;
      });
      return (void sendJson(c.res, 200, r, { etag: `"${r.version}"` }), true);
    }
    if (leaf) return false;
    if (m === 'PUT') {
      const body = ((await readBody(c.req)) ?? {}) as Record<string, unknown>;
      const r = await this.#changes.change(c.who, action, c.ifMatch, (d) => {
        const list = endpointsOf(d, cluster);
        const i = list.findIndex((e) => e.address === address);
        const ep = { ...body, address } as (typeof list)[number];
        if (i === -1) list.push(ep);
        else list[i] = ep;
      });
      return (void sendJson(c.res, 200, r, { etag: `"${r.version}"` }), true);
    }
    if (m === 'DELETE') {
      const r = await this.#changes.change(c.who, action, c.ifMatch, (d) => {
        const list = endpointsOf(d, cluster);
        const i = list.findIndex((e) => e.address === address);
        if (i === -1)
          throw new ApiError(404, 'not found', {
            error: 'not_found',
            message: `endpoint ${address} is not in cluster ${cluster}`,
          });
        list.splice(i, 1);
      });
      return (void sendJson(c.res, 200, r, { etag: `"${r.version}"` }), true);
    }
    return false;
  }

  async #drain(c: Call): Promise<boolean> {
    this.draining = true;
    const param = new URL(c.req.url ?? '/', 'http://a').searchParams.get('deadlineMs');
    const deadline = param ? Number(param) : msOf(this.#primary.current.config.gateway).drainTimeout;
    logger.info({ who: c.who, deadline }, 'drain requested');
    sendJson(c.res, 202, { draining: true });
    void this.#primary.drain(deadline);
    return true;
  }
}

function etag(changes: ConfigChanges) {
  return { etag: `"${changes.current.version}"` };
}

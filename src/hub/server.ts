import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { ApiError } from '../control/api-error.js';
import https from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { request } from 'undici';
import type { TSchema } from '@sinclair/typebox';
import { formatAddress, splitAddress } from '../common/address.js';
import { collectSchemaErrors } from '../config/validate.js';
import { logger } from '../observability/logger.js';
import { subjectAltNames } from '../common/subject-alt-name.js';
import { authenticate } from '../control/admin/auth.js';
import type { ConfigChanges } from '../control/config-service.js';
import { readBody, sendJson } from '../control/admin/http-util.js';
import { pathParts, probePath } from '../control/admin/request-path.js';
import { deleteResource, findResource, putResource, type ResourceKind } from '../control/admin/resources.js';
import { redactSecrets, withSecrets } from '../control/admin/secrets.js';
import type { ConfigStore } from '../control/store/config-store.js';
import type { Config } from '../config/schema/index.js';
import { AckSchema, ReportSchema, validateHubConfig, type HubConfig } from './config.js';
import type { Fleet } from './fleet.js';
import { fleetRegistry, summaryErrors } from './fleet-metrics.js';
import type { Registry } from 'prom-client';
import { REPLICA_HEADER, type Ack, type GatewayReport } from './protocol.js';
import { RotationRefused, SvidRefused, type MeshCa } from './ca/mesh-ca.js';
import { SHARED_UI_FILES, uiFileServer } from '../control/admin/ui-assets.js';

/**
 * The hub UI (docs/ui.md): its page and script beside this module (`src/hub/ui/`, copied to
 * `dist/hub/ui/` by the build), the helpers and stylesheet shared with the gateway UI.
 */
const HUB_UI_DIR = new URL('./ui/', import.meta.url);
const serveHubUi = uiFileServer({
  'index.html': new URL('index.html', HUB_UI_DIR),
  'app.js': new URL('app.js', HUB_UI_DIR),
  ...SHARED_UI_FILES,
});

const KINDS = new Set(['routes', 'clusters', 'rateLimits', 'virtualDestinations', 'revokedGateways']);

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  who: string;
  /** Gateway ids this caller may act as; undefined = any (an operator). */
  gatewayIds: string[] | undefined;
  parts: string[];
}

/** Who is calling: a verified certificate (its SPIFFE ID names one gateway) or a bearer token. */
/** Who calls the hub, and the gateways it may act as (undefined: not a gateway identity, any route). */
export interface Principal {
  who: string;
  gatewayIds: string[] | undefined;
}

/**
 * The principal of a verified client certificate: its SPIFFE ID, acting only as the gateway the ID's
 * last path segment names, or else its subject CN with no gateway identity. SANs are read through the
 * one SAN parser (a quoted value cannot smuggle a second entry); an X.509-SVID has exactly one SPIFFE
 * ID, so a certificate with two speaks for no gateway.
 */
export function certificatePrincipal(cert: Pick<PeerCertificate, 'subjectaltname' | 'subject'>): Principal {
  const spiffe = subjectAltNames(cert.subjectaltname, ['URI']).filter((u) => u.startsWith('spiffe://'));
  const uri = spiffe.length === 1 ? spiffe[0] : undefined;
  return uri
    ? { who: uri, gatewayIds: [uri.slice(uri.lastIndexOf('/') + 1)] }
    : { who: `cert:${cert.subject?.CN ?? 'unknown'}`, gatewayIds: undefined };
}

/**
 * The management server's API: the fleet document (same conventions as a gateway's admin API:
 * field-path errors, versions, ETag/If-Match, rollback, persistence), GET /fleet, and the gateway
 * protocol under /v1/gateways/{id}: report, watch (server-sent events) and ack.
 */
export class HubServer {
  readonly #store: ConfigStore<HubConfig>;
  readonly #fleet: Fleet;
  /** The same change path as a gateway's: a new version is live when the fleet has been sent it. */
  readonly #changes: ConfigChanges<HubConfig>;
  /** The fleet's CA when `hub.ca` is set: SVIDs on CSRs, GET /ca/bundle, and SVIDs accepted as client certificates. */
  readonly #ca: MeshCa | undefined;
  /** GET /fleet/metrics: the gateways' last traffic summaries in the Prometheus text format. */
  readonly #fleetMetrics: Registry;
  #server?: http.Server;

  /** With hub replicas on etcd: who is elected to sign and rotate, and the secret replicas vouch with. */
  readonly #replicas: ReplicaRole | undefined;

  constructor(
    store: ConfigStore<HubConfig>,
    fleet: Fleet,
    changes: ConfigChanges<HubConfig>,
    ca?: MeshCa,
    replicas?: ReplicaRole,
  ) {
    this.#store = store;
    this.#fleet = fleet;
    this.#changes = changes;
    this.#ca = ca;
    this.#replicas = replicas;
    this.#fleetMetrics = fleetRegistry(() => fleet.metrics());
  }

  get current() {
    return this.#store.current!;
  }

  async listen(): Promise<string> {
    const { hub } = this.current.config;
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.#handle(req, res);
    const server = hub.tls ? https.createServer(this.#tlsOptions(hub.tls), handler) : http.createServer(handler);
    server.keepAliveTimeout = 30000;
    const { host, port } = splitAddress(hub.address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.#server = server;
    const a = server.address() as AddressInfo;
    return formatAddress(a.address, a.port);
  }

  /**
   * Client certificates: required and verified against `clientCa` when set (mTLS only, as before).
   * With a mesh CA they are also asked for and verified against its bundle, but not required, so a
   * gateway can renew with its SVID while others still bootstrap with a token.
   */
  #tlsOptions(tls: NonNullable<HubConfig['hub']['tls']>): https.ServerOptions {
    const own = { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
    const ca = [
      ...(tls.clientCa ? [readFileSync(tls.clientCa, 'utf8')] : []),
      ...(this.#ca ? [this.#ca.bundlePem] : []),
    ];
    if (!ca.length) return own;
    return { ...own, ca, requestCert: true, rejectUnauthorized: Boolean(tls.clientCa) };
  }

  async close(): Promise<void> {
    this.#fleet.close();
    const s = this.#server;
    if (s)
      await new Promise((r) => {
        s.close(r);
        s.closeAllConnections();
      });
  }

  async #handle(req: IncomingMessage, res: ServerResponse) {
    try {
      // Probes on their exact paths only; everything else is authenticated before the path is parsed
      // (an unauthenticated caller gets 401 whether or not the path exists).
      if (probePath(req.url)) return sendJson(res, 200, { ready: true, version: this.current.version });
      const principal = this.#authenticate(req);
      if (!principal)
        return sendJson(res, 401, { error: 'unauthenticated' }, { 'www-authenticate': 'Bearer realm="meridian-hub"' });
      const url = new URL(req.url ?? '/', 'http://hub');
      const parts = pathParts(url.pathname);
      const call = { req, res, parts, ...principal };
      if (!(await this.#route(call)))
        sendJson(res, 404, { error: 'not_found', message: `no hub route for ${req.method} ${url.pathname}` });
    } catch (e) {
      if (e instanceof ApiError) return sendJson(res, e.status, e.body ?? { error: e.message });
      logger.error({ err: e }, 'hub request failed');
      sendJson(res, 500, { error: 'internal_error', message: (e as Error).message });
    }
  }

  /**
   * A verified client certificate (mTLS) or a bearer token; anonymous only when neither is
   * configured. A certificate with a SPIFFE ID may act only as the gateway its last path segment
   * names (spiffe://mesh/gateway/cluster-a -> cluster-a); a token only as its `gateways`, if listed.
   */
  #authenticate(req: IncomingMessage): Principal | undefined {
    const vouched = this.#replicas && vouchedPrincipal(req, this.#replicas.secret);
    if (vouched) return vouched;
    const socket = req.socket as TLSSocket;
    if (socket.authorized) return certificatePrincipal(socket.getPeerCertificate());
    const hub = this.current.config.hub;
    const auth = authenticate(req, { tokens: hub.tokens } as Config['admin']);
    if (!auth.ok) return undefined;
    const token = hub.tokens?.find((t) => `token:${t.name}` === auth.who);
    return { who: auth.who, gatewayIds: token?.gateways };
  }

  async #route(c: Call): Promise<boolean> {
    const [head, name, sub] = c.parts;
    const m = c.req.method;
    if (head === 'v1' && name === 'gateways' && sub) {
      if (c.gatewayIds && !c.gatewayIds.includes(sub))
        throw new ApiError(403, 'forbidden', {
          error: 'forbidden',
          message: `${c.who} may not act as gateway "${sub}"`,
        });
      // Whatever the credential (a token, or an SVID still within its validity): revoked is revoked.
      if (this.#fleet.isRevoked(sub))
        throw new ApiError(403, 'revoked', { error: 'revoked', message: `gateway "${sub}" is revoked` });
      return this.#gatewayProtocol(c, sub, c.parts[3]);
    }
    // The trust bundle is for every authenticated caller, gateways included: it holds no secret.
    if (head === 'ca' && name === 'bundle' && !sub && m === 'GET') return this.#bundle(c);
    if (c.gatewayIds)
      throw new ApiError(403, 'forbidden', {
        error: 'forbidden',
        message: `${c.who} is a gateway identity: it may only use /v1/gateways/{id}`,
      });
    if (head === 'ui') return (await serveHubUi(c.res, m, new URL(c.req.url ?? '/', 'http://hub').pathname), true);
    if (head === 'ca' && !name && m === 'GET') {
      // A hub without hub.ca is a state, not a missing resource: `issuing: false` (a 404 would be an
      // error in every browser console polling it).
      return (void sendJson(c.res, 200, this.#ca ? this.#caStatus(this.#ca) : { issuing: false }), true);
    }
    if (head === 'ca' && name === 'rotation' && !sub && m === 'POST' && this.#ca) return this.#rotate(c, this.#ca);
    if (head === 'fleet' && name === 'virtual-destinations' && !sub && m === 'GET')
      return (
        void sendJson(c.res, 200, {
          version: this.current.version,
          virtualDestinations: this.#fleet.virtualDestinations(),
        }),
        true
      );
    if (head === 'fleet' && name === 'metrics' && !sub && m === 'GET') {
      const text = await this.#fleetMetrics.metrics();
      c.res.writeHead(200, { 'content-type': this.#fleetMetrics.contentType, 'cache-control': 'no-store' });
      c.res.end(text);
      return true;
    }
    if (head === 'fleet' && !name && m === 'GET')
      return (void sendJson(c.res, 200, { version: this.current.version, gateways: this.#fleet.list() }), true);
    if (head === 'config') return this.#config(c, name);
    if (!KINDS.has(head ?? '')) return false;
    const kind = head as ResourceKind;
    const etag = { etag: `"${this.current.version}"` };
    if (!name && m === 'GET')
      return (void sendJson(c.res, 200, (this.current.config as unknown as Config)[kind], etag), true);
    if (!name || sub) return false;
    if (m === 'GET')
      return (
        void sendJson(c.res, 200, findResource(this.current.config as unknown as Config, kind, name), etag), true
      );
    if (m === 'PUT') {
      const body = await readBody(c.req);
      return (
        void this.#reply(
          c,
          await this.#change(
            c,
            `put ${kind}/${name}`,
            (d) => void putResource(d as unknown as Config, kind, name, body),
          ),
        ),
        true
      );
    }
    if (m === 'DELETE')
      return (
        void this.#reply(
          c,
          await this.#change(c, `delete ${kind}/${name}`, (d) => deleteResource(d as unknown as Config, kind, name)),
        ),
        true
      );
    return false;
  }

  async #config(c: Call, sub: string | undefined): Promise<boolean> {
    const m = c.req.method;
    if (!sub && m === 'GET')
      return (
        void sendJson(c.res, 200, redactSecrets(this.current.config), { etag: `"${this.current.version}"` }), true
      );
    if (!sub && m === 'PUT') {
      const body = await readBody(c.req);
      return (
        void this.#reply(c, await this.#change(c, 'replace config', (draft) => withSecrets(body, draft, 'hub'))), true
      );
    }
    if (sub === 'validate' && m === 'POST') {
      const v = validateHubConfig(withSecrets(await readBody(c.req), this.current.config, 'hub'));
      return (
        void sendJson(c.res, v.ok ? 200 : 400, v.ok ? { valid: true } : { valid: false, errors: v.errors }), true
      );
    }
    if (sub === 'versions' && m === 'GET') return (void sendJson(c.res, 200, this.#store.list()), true);
    if (sub === 'rollback' && m === 'POST') {
      const body = (await readBody(c.req)) as { version?: unknown } | undefined;
      const target = this.#store.get(Number(body?.version));
      if (!target)
        throw new ApiError(404, 'unknown version', {
          error: 'not_found',
          message: `version ${String(body?.version)} is not in the history`,
        });
      return (
        void this.#reply(
          c,
          await this.#change(c, `rollback to ${target.version}`, () => structuredClone(target.config) as HubConfig),
        ),
        true
      );
    }
    return false;
  }

  async #gatewayProtocol(c: Call, id: string, action: string | undefined): Promise<boolean> {
    const m = c.req.method;
    if (action === 'report' && m === 'POST') {
      const report = checked<GatewayReport>(ReportSchema, await readBody(c.req));
      const errors = report.summary ? summaryErrors(report.summary) : [];
      if (errors.length) throw new ApiError(400, 'invalid body', { errors });
      this.#fleet.report(id, report, c.who, replicaOf(c.req));
      return (void sendJson(c.res, 200, { ok: true, version: this.current.version }), true);
    }
    if (action === 'ack' && m === 'POST') {
      const ack = checked<Ack>(AckSchema, await readBody(c.req));
      if (!ack.ok)
        logger.warn({ gateway: id, version: ack.version, errors: ack.errors }, 'gateway rejected a snapshot');
      this.#fleet.ack(id, ack, replicaOf(c.req));
      return (void sendJson(c.res, 200, { ok: true }), true);
    }
    if (action === 'svid' && m === 'POST') return this.#issueSvid(c, id);
    // What a gateway needs to write its CSR: the trust domain its SPIFFE ID is in.
    if (action === 'svid' && m === 'GET' && this.#ca)
      return (void sendJson(c.res, 200, { trustDomain: this.#ca.trustDomain }), true);
    if (action === 'watch' && m === 'GET') {
      if (!this.#fleet.has(id))
        throw new ApiError(409, 'report first', {
          error: 'unknown_gateway',
          message: `gateway ${id} must POST a report before it watches`,
        });
      this.#fleet.watch(id, c.res, replicaOf(c.req));
      return true;
    }
    return false;
  }

  #bundle(c: Call): boolean {
    if (!this.#ca) return false;
    c.res.writeHead(200, { 'content-type': 'application/x-pem-file', 'cache-control': 'no-store' });
    c.res.end(this.#ca.bundlePem);
    return true;
  }

  /** POST /v1/gateways/{id}/svid `{ csr }`: the gateway's SVID, signed for the key in its request. */
  async #issueSvid(c: Call, id: string): Promise<boolean> {
    if (!this.#ca) return false;
    if (await this.#forwardedToElected(c)) return true;
    const body = (await readBody(c.req)) as { csr?: unknown } | undefined;
    if (typeof body?.csr !== 'string')
      throw new ApiError(400, 'invalid body', {
        errors: [{ path: 'csr', message: 'expected a PEM certificate request' }],
      });
    try {
      const callerSpiffeId = c.who.startsWith('spiffe://') ? c.who : undefined;
      const issued = await this.#ca.issue(body.csr, { gatewayId: id, callerSpiffeId });
      logger.info({ gateway: id, spiffeId: issued.spiffeId, expiresAt: issued.expiresAt, by: c.who }, 'issued an SVID');
      this.#fleet.recordSvid(id, issued);
      sendJson(c.res, 200, issued);
      return true;
    } catch (e) {
      if (!(e instanceof SvidRefused)) throw e;
      logger.warn({ gateway: id, by: c.who, reason: e.message }, 'refused an SVID request');
      throw new ApiError(e.status, 'svid refused', {
        error: e.status === 403 ? 'forbidden' : 'invalid_csr',
        message: e.message,
      });
    }
  }

  /** The CA's roots changed (a step another replica took): trust and snapshots follow. */
  caChanged(): void {
    this.#trustCurrentBundle();
    this.#fleet.trustChanged();
  }

  /** GET /ca: the roots and the rotation phase, and who a rotation's next step would wait for. */
  #caStatus(ca: MeshCa) {
    const previous = ca.previousFingerprint;
    return {
      issuing: true,
      ...ca.summary,
      ...(this.#replicas ? { elected: this.#replicas.elected, electedUrl: this.#replicas.leaderUrl } : {}),
      notInSync: this.#fleet.notInSync(),
      holdingPrevious: previous ? this.#fleet.holdingSvidsOf(previous) : [],
    };
  }

  /**
   * POST /ca/rotation `{ step: add | activate | retire, force? }`: one step of a root rotation (see
   * MeshCa). `activate` waits (409) until every connected gateway acknowledged the snapshot that
   * carries the next root, so none is presented a leaf it cannot verify; `retire` waits until no
   * unexpired SVID this hub signed chains to the previous root. `force` skips the wait.
   */
  async #rotate(c: Call, ca: MeshCa): Promise<boolean> {
    const body = (await readBody(c.req)) as { step?: unknown; force?: unknown } | undefined;
    const step = body?.step;
    if (step !== 'add' && step !== 'activate' && step !== 'retire')
      throw new ApiError(400, 'invalid body', {
        errors: [{ path: 'step', message: 'expected add, activate or retire' }],
      });
    const waitingFor =
      body?.force === true
        ? []
        : step === 'activate'
          ? this.#fleet.notInSync()
          : step === 'retire' && ca.previousFingerprint
            ? this.#fleet.holdingSvidsOf(ca.previousFingerprint)
            : [];
    if (waitingFor.length)
      throw new ApiError(409, 'not yet', {
        error: 'rotation_waiting',
        message:
          step === 'activate'
            ? `gateways have not acknowledged the bundle with the next root: ${waitingFor.join(', ')}`
            : `gateways still hold unexpired SVIDs of the previous root: ${waitingFor.join(', ')}`,
        gateways: waitingFor,
      });
    try {
      if (step === 'add') await ca.addNextRoot();
      else if (step === 'activate') await ca.activateNextRoot();
      else await ca.retirePreviousRoot();
    } catch (e) {
      if (e instanceof RotationRefused)
        throw new ApiError(409, 'rotation refused', { error: 'rotation_refused', message: e.message });
      throw e;
    }
    logger.info({ step, phase: ca.phase, by: c.who, signer: ca.signerFingerprint }, 'CA rotation step');
    this.#trustCurrentBundle();
    this.#fleet.trustChanged();
    sendJson(c.res, 200, this.#caStatus(ca));
    return true;
  }

  /**
   * With replicas, only the elected one signs SVIDs and takes rotation steps: another replica sends
   * the request on to it, vouching for the caller it authenticated (the replica secret), and relays
   * the answer. No replica elected (during a failover, at most leaderTtl): 503, asked again later.
   */
  async #forwardedToElected(c: Call): Promise<boolean> {
    const replicas = this.#replicas;
    if (!replicas || replicas.elected) return false;
    const target = replicas.leaderUrl;
    const noLeader = (why: string) =>
      sendJson(
        c.res,
        503,
        { error: 'no_leader', message: `no elected hub replica to sign: ${why}` },
        { 'retry-after': '1' },
      );
    if (!target) return (noLeader('none is elected yet'), true);
    // The forwarded calls carry JSON (a CSR, a rotation step): read once, with the API's body limit.
    const body = JSON.stringify((await readBody(c.req)) ?? {});
    try {
      const r = await request(`${target}${c.req.url}`, {
        method: c.req.method as 'POST',
        headers: {
          'content-type': 'application/json',
          [VOUCH_SECRET]: replicas.secret,
          [VOUCH_WHO]: c.who,
          ...(c.gatewayIds ? { [VOUCH_GATEWAYS]: c.gatewayIds.join(',') } : {}),
        },
        body,
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      const text = await r.body.text();
      c.res.writeHead(r.statusCode, { 'content-type': 'application/json' });
      c.res.end(text);
    } catch (e) {
      noLeader(`${target} did not answer (${(e as Error).message})`);
    }
    return true;
  }

  /**
   * Renewals authenticate with SVIDs of every root in the bundle: after a rotation step the hub's TLS
   * trusts what the fleet trusts (the same options it listened with, the bundle as it is now).
   */
  #trustCurrentBundle(): void {
    const tls = this.current.config.hub.tls;
    if (tls && this.#server instanceof https.Server) this.#server.setSecureContext(this.#tlsOptions(tls));
  }

  /** A change through the config service, with the caller's If-Match. */
  #change(c: Call, action: string, edit: (draft: HubConfig) => HubConfig | void) {
    return this.#changes.change(c.who, action, c.req.headers['if-match'], edit);
  }

  #reply(c: Call, r: { version: number; changed: boolean }) {
    sendJson(c.res, 200, r, { etag: `"${r.version}"` });
  }
}

function checked<T>(schema: TSchema, body: unknown): T {
  const errors = collectSchemaErrors(schema, body);
  if (errors.length) throw new ApiError(400, 'invalid body', { errors });
  return body as T;
}

/** The elected hub replica as this one knows it (etcd-replication.ts). */
export interface ReplicaRole {
  readonly elected: boolean;
  readonly leaderUrl: string | undefined;
  readonly secret: string;
}

const VOUCH_SECRET = 'x-meridian-replica-secret';
const VOUCH_WHO = 'x-meridian-on-behalf-of';
const VOUCH_GATEWAYS = 'x-meridian-on-behalf-of-gateways';

/** A request another replica forwarded: the caller it authenticated, when the replica secret matches. */
function vouchedPrincipal(req: IncomingMessage, secret: string): Principal | undefined {
  const given = req.headers[VOUCH_SECRET];
  if (typeof given !== 'string' || !secret) return undefined;
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
  const who = req.headers[VOUCH_WHO];
  const gateways = req.headers[VOUCH_GATEWAYS];
  if (typeof who !== 'string' || !who) return undefined;
  return { who, gatewayIds: typeof gateways === 'string' ? gateways.split(',') : undefined };
}

/** The replica a gateway process names itself with (REPLICA_HEADER), or '' when absent or malformed. */
function replicaOf(req: IncomingMessage): string {
  const v = req.headers[REPLICA_HEADER];
  return typeof v === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(v) ? v : '';
}

import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import type { ListenerConfig } from '../config/schema/index.js';
import { gauge, counter } from '../observability/metrics.js';
import { logger } from '../observability/logger.js';
import { peerIdentity, validateSvid } from './peer-identity.js';
import { hasCaBasicConstraint } from './basic-constraints.js';
import { parseGatewaySpiffeId } from '../common/spiffe-id.js';

type ListenerTls = NonNullable<ListenerConfig['tls']>;

const certExpiry = gauge(
  'meridian_tls_cert_expiry_timestamp_seconds',
  'Expiry (notAfter) of each loaded certificate',
  ['listener', 'cert'],
  'min',
);
const handshakeRejects = counter('meridian_tls_client_rejected_total', 'TLS connections refused after the handshake', [
  'listener',
  'reason',
]);

/** ECDHE with AEAD ciphers only (TLS 1.2); TLS 1.3 suites are AEAD by definition. */
export const DEFAULT_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';

/**
 * The certificates of one TLS listener: a default context plus one per SNI name, rebuilt from the
 * files on reload. New handshakes use the new contexts; open connections keep theirs.
 */
export class TlsContexts {
  readonly #listener: string;
  readonly #tls: ListenerTls;
  #default!: SecureContext;
  #byName = new Map<string, SecureContext>();
  #watchers: FSWatcher[] = [];
  /** tls.revokedGateways, changed in place (setRevokedGateways). */
  #revoked: ReadonlySet<string>;
  /** Open connections with a client certificate: closed when their peer's gateway is revoked. */
  readonly #peers = new Set<TLSSocket>();
  #reloadTimer: NodeJS.Timeout | undefined;

  constructor(listener: string, cfg: ListenerTls) {
    this.#listener = listener;
    this.#tls = cfg;
    this.#revoked = new Set(cfg.revokedGateways);
    this.reload();
  }

  /** Server options: verification settings plus the SNI callback over the current contexts. */
  serverOptions(): tls.TlsOptions {
    const t = this.#tls;
    return {
      // Without SNI Node never calls SNICallback: the base context must already be the default one.
      ...this.defaultContextOptions(),
      requestCert: t.requireClientCert || Boolean(t.ca),
      rejectUnauthorized: t.requireClientCert,
      minVersion: t.minVersion ?? 'TLSv1.2',
      ciphers: t.ciphers ?? DEFAULT_CIPHERS,
      ALPNProtocols: t.alpn ?? ['h2', 'http/1.1'],
      SNICallback: (name, cb) => {
        // A throw inside SNICallback used to crash the process (CVE-2026-21637): never let one escape.
        try {
          cb(null, this.#byName.get(name.toLowerCase()) ?? wildcard(this.#byName, name) ?? this.#default);
        } catch (e) {
          cb(e as Error);
        }
      },
    };
  }

  /** Re-read every certificate file. On error the previous contexts stay in use. */
  reload(): boolean {
    try {
      const t = this.#tls;
      const next = new Map<string, SecureContext>();
      for (const c of t.certificates ?? []) {
        const ctx = tls.createSecureContext(this.#contextOptions(c.cert, c.key));
        for (const n of c.serverNames) next.set(n.toLowerCase(), ctx);
        this.#exportExpiry(c.cert);
      }
      const first = t.certificates?.[0];
      this.#default = tls.createSecureContext(this.#contextOptions(t.cert ?? first?.cert, t.key ?? first?.key));
      if (t.cert) this.#exportExpiry(t.cert);
      this.#byName = next;
      return true;
    } catch (e) {
      logger.error(
        { err: e, listener: this.#listener },
        'certificate reload failed; keeping the previous certificates',
      );
      return false;
    }
  }

  /** Watch the certificate files; a change reloads (debounced) and calls `apply` with fresh options. */
  watch(apply: (opts: tls.SecureContextOptions) => void): void {
    const t = this.#tls;
    const files = [t.cert, t.key, t.ca, ...(t.certificates ?? []).flatMap((c) => [c.cert, c.key])].filter(
      (f): f is string => Boolean(f),
    );
    for (const f of new Set(files)) {
      try {
        this.#watchers.push(watch(f, () => this.#scheduleReload(apply)));
      } catch {
        // A file that cannot be watched still reloads through POST /certificates/reload.
      }
    }
  }

  #scheduleReload(apply: (opts: tls.SecureContextOptions) => void) {
    clearTimeout(this.#reloadTimer);
    this.#reloadTimer = setTimeout(() => {
      if (this.reload())
        apply(
          this.#contextOptions(
            this.#tls.cert ?? this.#tls.certificates?.[0]?.cert,
            this.#tls.key ?? this.#tls.certificates?.[0]?.key,
          ),
        );
    }, 100);
  }

  /** Options for setSecureContext after a reload (the default certificate and CA). */
  defaultContextOptions(): tls.SecureContextOptions {
    return this.#contextOptions(
      this.#tls.cert ?? this.#tls.certificates?.[0]?.cert,
      this.#tls.key ?? this.#tls.certificates?.[0]?.key,
    );
  }

  close(): void {
    for (const w of this.#watchers) w.close();
    clearTimeout(this.#reloadTimer);
  }

  #contextOptions(cert: string | undefined, key: string | undefined): tls.SecureContextOptions {
    const t = this.#tls;
    return {
      cert: cert ? readFileSync(cert) : undefined,
      key: key ? readFileSync(key) : undefined,
      ca: t.ca ? readFileSync(t.ca) : undefined,
      minVersion: t.minVersion ?? 'TLSv1.2',
      ciphers: t.ciphers ?? DEFAULT_CIPHERS,
    };
  }

  #exportExpiry(file: string) {
    const cert = new X509Certificate(readFileSync(file));
    certExpiry.labels(this.#listener, file).set(Math.floor(new Date(cert.validTo).getTime() / 1000));
  }

  /**
   * Checks after a successful handshake that OpenSSL does not make: a client leaf must not be a CA,
   * and with SPIFFE trust domains it must be a valid X.509-SVID. Returns a reason to refuse, if any.
   */
  refuseReason(socket: TLSSocket): string | undefined {
    if (this.#revoked.size && this.#revokedPeer(socket)) return 'revoked_gateway';
    const t = this.#tls;
    if (!t.requireClientCert && !t.spiffe) return undefined;
    const cert = socket.getPeerX509Certificate();
    if (!cert) return t.requireClientCert ? 'no_client_certificate' : undefined;
    if (!socket.authorized) return 'unverified_client_certificate';
    if (cert.ca || hasCaBasicConstraint(cert.raw)) return 'client_certificate_is_ca';
    if (t.spiffe) return validateSvid(peerIdentity(cert), t.spiffe.trustDomains);
    return undefined;
  }

  /**
   * A connection that passed the checks: remembered while open when it has a client certificate, so
   * a later revocation of its peer closes it (open connections do not re-handshake).
   */
  accepted(socket: TLSSocket): void {
    if (!socket.getPeerX509Certificate()) return;
    this.#peers.add(socket);
    socket.once('close', () => this.#peers.delete(socket));
  }

  /** New revocations: refused at the next handshakes; open connections from revoked peers close now. */
  setRevokedGateways(ids: readonly string[] | undefined): void {
    this.#revoked = new Set(ids);
    if (!this.#revoked.size) return;
    for (const socket of this.#peers)
      if (this.#revokedPeer(socket)) {
        this.countRefusal('revoked_gateway');
        socket.destroy();
      }
  }

  /** The peer's certificate names a gateway (by its mesh SPIFFE ID) that is revoked. */
  #revokedPeer(socket: TLSSocket): boolean {
    const cert = socket.getPeerX509Certificate();
    const spiffeId = cert && peerIdentity(cert).spiffeId;
    const gateway = spiffeId && parseGatewaySpiffeId(spiffeId);
    return !!gateway && this.#revoked.has(gateway.gatewayId);
  }

  countRefusal(reason: string): void {
    handshakeRejects.labels(this.#listener, reason).inc();
  }
}

function wildcard(map: Map<string, SecureContext>, name: string): SecureContext | undefined {
  const dot = name.indexOf('.');
  return dot === -1 ? undefined : map.get(`*${name.slice(dot).toLowerCase()}`);
}

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { REPLICA_HEADER } from '../../hub/protocol.js';

/** Where a gateway's hub is and how this gateway proves who it is there. */
export interface HubConnectionOptions {
  url: string;
  /** More replicas of the hub, tried in order (round the list) when the one in use fails. */
  failoverUrls?: string[];
  /** The gateway id in the fleet (the path segment of /v1/gateways/{id}). */
  id: string;
  token?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

/** A hub request that did not answer 200: the status, and the hub's own message when it sent one. */
export class HubCallError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One gateway process's connection to the hub's gateway protocol (/v1/gateways/{id}/...): the
 * keep-alive agent, the credentials sent on every request, and this process's replica id. The hub
 * client (watch, report, ack) and the SVID bootstrap speak through it.
 */
export class HubConnection {
  readonly id: string;
  readonly #opts: HubConnectionOptions;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  readonly #replica = randomUUID();
  readonly #urls: string[];
  #current = 0;

  constructor(opts: HubConnectionOptions) {
    this.#opts = opts;
    this.id = opts.id;
    this.#urls = [opts.url, ...(opts.failoverUrls ?? [])];
    const secure = opts.url.startsWith('https:');
    this.#agent = secure ? new https.Agent({ keepAlive: true, ...opts.tls }) : new http.Agent({ keepAlive: true });
    this.#request = secure ? https.request : http.request;
  }

  /** The hub replica in use. */
  get hubUrl(): string {
    return this.#urls[this.#current];
  }

  /** How many hub replicas this connection knows. */
  get replicas(): number {
    return this.#urls.length;
  }

  /** The replica in use failed: use the next one (round the list); returns it. */
  failover(): string {
    this.#current = (this.#current + 1) % this.#urls.length;
    return this.hubUrl;
  }

  /** A request on the connection's agent, with its credentials and replica id (see REPLICA_HEADER). */
  request(action: string, method: string, headers: Record<string, string | number> = {}): http.ClientRequest {
    return this.#request(this.#url(action), {
      method,
      agent: this.#agent,
      headers: { ...this.#identity(), ...headers },
    });
  }

  /**
   * One JSON call (`body` already serialized, or none for a GET); resolves with the parsed answer of a
   * 200, rejects with HubCallError on any other status and with the socket's error on a failure.
   */
  call(action: string, body?: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> =
        body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      const req = this.request(action, body === undefined ? 'GET' : 'POST', headers);
      req.setTimeout(5000, () => req.destroy(new Error('hub request timed out')));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const json = parseJson(text);
          if (res.statusCode === 200) return resolve(json);
          const message = (json as { message?: unknown } | undefined)?.message;
          reject(
            new HubCallError(
              res.statusCode ?? 0,
              `hub answered ${res.statusCode} to ${action}${typeof message === 'string' ? `: ${message}` : ''}`,
            ),
          );
        });
      });
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  #url(action: string): URL {
    return new URL(`/v1/gateways/${encodeURIComponent(this.#opts.id)}/${action}`, this.hubUrl);
  }

  /** Who is calling: the hub token if any, and this process's replica id. */
  #identity(): Record<string, string> {
    return this.#opts.token
      ? { authorization: `Bearer ${this.#opts.token}`, [REPLICA_HEADER]: this.#replica }
      : { [REPLICA_HEADER]: this.#replica };
  }
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

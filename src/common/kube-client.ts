import http from 'node:http';
import https from 'node:https';
import { existsSync } from 'node:fs';
import { channel } from 'node:diagnostics_channel';
import type { KubeConfig, V1Status } from '@kubernetes/client-node';
import { backoffDelay } from './backoff.js';
import type { Rng } from './clock.js';

/**
 * A small Kubernetes API client: credentials from @kubernetes/client-node's KubeConfig, requests on
 * node:http(s), and a list+watch loop. The library's own ListWatch asks for no bookmarks, gives up on
 * the first error and drops the Status message of a refused request (an RBAC 403 says which permission
 * is missing), so the loop is written here; everything else (TLS, tokens, exec plugins) is the library's.
 */

/** A failed API request; `code` is the HTTP status or the Status object's code when the server gave one. */
export class KubeApiError extends Error {
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
  }
}

/** Each watch event once applied, `{ path, type, resourceVersion }`: tests wait on it instead of sleeping. */
export const watchEventChannel = channel('meridian:kube-watch-event');

/** The service-account files a pod gets mounted; present together with KUBERNETES_SERVICE_HOST in a cluster. */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Credentials: the given kubeconfig file; else the pod's service account when running in a cluster
 * (KUBERNETES_SERVICE_HOST and the mounted token); else the library's default ($KUBECONFIG, then ~/.kube/config).
 */
export async function loadKubeConfig(path: string | undefined): Promise<KubeConfig> {
  // Loaded on first use: the library takes ~300 ms to import, which a gateway without Kubernetes should not pay.
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

/**
 * One request to the current cluster's server with the kubeconfig's credentials; resolves with the
 * response when 2xx, else rejects with the API's Status message and code.
 */
export async function kubeRequest(
  kc: KubeConfig,
  path: string,
  init: { method?: string; body?: unknown; signal?: AbortSignal } = {},
): Promise<http.IncomingMessage> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new KubeApiError('kubeconfig has no current cluster');
  const body = init.body === undefined ? undefined : JSON.stringify(init.body);
  const options: https.RequestOptions = {
    headers: { Accept: 'application/json', ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
  };
  await kc.applyToHTTPSOptions(options);
  const url = new URL(server.replace(/\/+$/, '') + path);
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(
      url,
      { ...options, method: init.method ?? 'GET', signal: init.signal },
      resolve,
    );
    request.on('error', reject);
    request.end(body);
  });
  const code = response.statusCode ?? 0;
  if (code >= 200 && code < 300) return response;
  const text = await readBody(response).catch(() => '');
  let status: V1Status = {};
  try {
    status = JSON.parse(text) as V1Status;
  } catch {
    // Not a Status object (a proxy's error page): the HTTP status alone says it.
  }
  throw new KubeApiError(
    `${code} ${status.reason ?? response.statusMessage ?? ''}${status.message ? `: ${status.message}` : ''}`,
    code,
  );
}

export async function readBody(response: http.IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let body = '';
  for await (const chunk of response as AsyncIterable<string>) body += chunk;
  return body;
}

/** Tuning of a list+watch loop. */
export interface ResourceWatchOptions {
  /** Reconnect backoff after a failure: the n-th retry waits between half and all of min(max, base * 2^(n-1)). */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Bound of one list request (a watch is bounded by its timeoutSeconds instead). */
  listTimeoutMs: number;
  /**
   * The watch's `timeoutSeconds`: the API server ends the watch after it and the loop resumes from the
   * last resourceVersion. A watch still open `watchSilenceGraceMs` past it is taken as a silently dead
   * connection and aborted. Default: a random 300-600 s per watch, as client-go's reflector spreads them.
   */
  watchTimeoutSeconds?: number;
  watchSilenceGraceMs: number;
  rng: Rng;
}

/** What a list+watch loop reports to its owner. */
export interface ResourceWatchHandlers<T> {
  /** A list replaced everything: `items` is the whole current set. Awaited before the next watch. */
  listed(items: T[]): void | Promise<void>;
  /** One change after the list (or a BOOKMARK: `type` says). */
  changed(type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK', item: T): void;
  /** A request or event went through (clears a failure state). */
  succeeded(): void;
  /** A request failed; the loop retries after a backoff. */
  failed(error: Error): void;
  /** The resume point was compacted away (410): the loop lists again. */
  expired?(resourceVersion: string): void;
}

type WatchEvent = {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: { metadata?: { resourceVersion?: string } };
};

/** A watch that ends cleanly sooner than this waits a retry delay before the next, so a server that closes at once is not hammered. */
const SHORT_WATCH_MS = 1000;

/**
 * List, then watch from the list's resourceVersion with bookmarks, resuming from the last version seen
 * when a watch ends or drops (no re-list). 410 Gone (the version was compacted: a 410 response or an
 * ERROR event with code 410) lists again; a second 410 in a row for the version a list just returned is
 * a failure with the growing backoff, so the loop never spins. Any other failure: `failed`, then a
 * jittered exponential backoff, reset by the next success.
 */
export class ResourceWatch<T extends { metadata?: { resourceVersion?: string } }> {
  /** Resolves when the first list ended, either way (its `listed` handler awaited). */
  readonly first: Promise<void>;
  #firstEnded!: () => void;
  readonly #kubeConfig: () => Promise<KubeConfig>;
  readonly #path: string;
  readonly #handlers: ResourceWatchHandlers<T>;
  readonly #options: ResourceWatchOptions;
  readonly #abort = new AbortController();
  #kc: KubeConfig | undefined;
  /** Where the next watch resumes; '' means list first. */
  #resourceVersion = '';
  /** 410s in a row for the version a list had just returned (no event since): the second one is a failure, not a compaction. */
  #expiredListVersions = 0;
  #versionFromList = false;
  #failures = 0;
  #stopped = false;

  /** `path`: the collection, with a query of its own if any (`...?labelSelector=...`). */
  constructor(
    kubeConfig: () => Promise<KubeConfig>,
    path: string,
    handlers: ResourceWatchHandlers<T>,
    options: ResourceWatchOptions,
  ) {
    this.#kubeConfig = kubeConfig;
    this.#path = path;
    this.#handlers = handlers;
    this.#options = options;
    this.first = new Promise((resolve) => (this.#firstEnded = resolve));
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    this.#firstEnded();
  }

  /** Half to all of min(max, base * 2^(attempt-1)): never a hot retry, always spread. */
  retryDelay(attempt: number): number {
    const { retryBaseMs, retryMaxMs, rng } = this.#options;
    return (
      Math.min(retryMaxMs, retryBaseMs * 2 ** Math.max(0, attempt - 1)) / 2 +
      backoffDelay(attempt, retryBaseMs / 2, retryMaxMs / 2, rng)
    );
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let watchStarted = Date.now();
      try {
        this.#kc ??= await this.#kubeConfig();
        if (!this.#resourceVersion) {
          await this.#list();
          this.#firstEnded();
          watchStarted = Date.now();
        }
        await this.#watch();
        if (Date.now() - watchStarted < SHORT_WATCH_MS && this.#resourceVersion) await this.#sleep(this.retryDelay(1));
      } catch (e) {
        if (this.#stopped) return;
        this.#failures++;
        this.#handlers.failed(e as Error);
        this.#firstEnded();
        // A list between 410s succeeds and resets #failures: the 410s in a row keep the backoff growing.
        await this.#sleep(this.retryDelay(Math.max(this.#failures, this.#expiredListVersions - 1)));
      }
    }
  }

  #succeeded(): void {
    this.#failures = 0;
    this.#handlers.succeeded();
  }

  async #list(): Promise<void> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#options.listTimeoutMs)]);
    const response = await kubeRequest(this.#kc!, this.#path, { signal });
    const list = JSON.parse(await readBody(response)) as {
      metadata?: { resourceVersion?: string };
      items?: T[] | null;
    };
    if (this.#stopped) return;
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#versionFromList = true;
    this.#succeeded();
    await this.#handlers.listed(list.items ?? []);
  }

  /**
   * Watch from #resourceVersion until the server ends the watch (resolves), it says 410 (clears the
   * version and resolves, so the loop re-lists) or anything fails (rejects).
   */
  async #watch(): Promise<void> {
    const timeoutSeconds = this.#options.watchTimeoutSeconds ?? Math.floor(300 + this.#options.rng.random() * 300);
    const watchAbort = new AbortController();
    const { watchSilenceGraceMs } = this.#options;
    const silence = setTimeout(
      () =>
        watchAbort.abort(
          new KubeApiError(
            `watch still open ${watchSilenceGraceMs} ms past its timeoutSeconds (${timeoutSeconds}); reconnecting`,
          ),
        ),
      timeoutSeconds * 1000 + watchSilenceGraceMs,
    );
    const signal = AbortSignal.any([this.#abort.signal, watchAbort.signal]);
    const query = `${this.#path.includes('?') ? '&' : '?'}watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(this.#resourceVersion)}&timeoutSeconds=${timeoutSeconds}`;
    try {
      let response: http.IncomingMessage;
      try {
        response = await kubeRequest(this.#kc!, this.#path + query, { signal });
      } catch (e) {
        if ((e as KubeApiError).code === 410) return this.#expired();
        throw e;
      }
      this.#succeeded();
      let buffered = '';
      response.setEncoding('utf8');
      for await (const chunk of response as AsyncIterable<string>) {
        buffered += chunk;
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line && this.#event(JSON.parse(line) as WatchEvent) === 'expired') {
            response.destroy();
            return this.#expired();
          }
        }
      }
    } catch (e) {
      throw signal.aborted && signal.reason instanceof KubeApiError ? signal.reason : e;
    } finally {
      clearTimeout(silence);
    }
  }

  /** Apply one watch event; 'expired' when the server says our resourceVersion is gone. */
  #event(event: WatchEvent): 'expired' | undefined {
    if (event.type === 'ERROR') {
      const status = event.object as V1Status;
      if (status.code === 410) return 'expired';
      throw new KubeApiError(
        `watch error ${status.code ?? ''} ${status.reason ?? ''}: ${status.message ?? ''}`.trim(),
        status.code,
      );
    }
    const item = event.object as T;
    if (item.metadata?.resourceVersion) {
      this.#resourceVersion = item.metadata.resourceVersion;
      this.#versionFromList = false;
      this.#expiredListVersions = 0;
    }
    this.#succeeded();
    this.#handlers.changed(event.type, item);
    if (watchEventChannel.hasSubscribers)
      watchEventChannel.publish({
        path: this.#path,
        type: event.type,
        resourceVersion: item.metadata?.resourceVersion,
      });
    return undefined;
  }

  #expired(): void {
    // One 410 for a list's version is a quiet collection outliving the compaction window; twice in a row
    // is a server refusing what it just listed, and listing again at once would spin.
    if (this.#versionFromList && ++this.#expiredListVersions >= 2) {
      const version = this.#resourceVersion;
      this.#resourceVersion = '';
      throw new KubeApiError(`410 Gone again for resourceVersion ${version}, the version a list just returned`, 410);
    }
    this.#handlers.expired?.(this.#resourceVersion);
    this.#resourceVersion = '';
  }

  /** Wait `ms`, or less if the loop is stopped; the abort listener goes with the wait, as a loop may wait thousands of times. */
  #sleep(ms: number): Promise<void> {
    const signal = this.#abort.signal;
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

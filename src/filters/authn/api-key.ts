import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ApiKeySetConfig } from '../../config/schema/auth.js';
import type { RequestContext } from '../filter.js';
import { isHeaderSafe } from './jwt.js';

export type { ApiKeySetConfig } from '../../config/schema/auth.js';

interface Consumer {
  consumer: string;
  metadata: Readonly<Record<string, string>>;
  /** The consumer as an upstream header value; undefined when it is not header-safe. */
  headerValue: string | undefined;
}

type KeyEntry = ApiKeySetConfig['keys'][number];

/**
 * API keys stored as SHA-256 digests (in config or a JSON file). A presented key is hashed and the
 * digest looked up in a Map: the work per request is one hash and one lookup whichever key matches
 * or fails, and comparing digests leaks nothing useful about the stored keys. The key header is
 * removed from the upstream request unless `forwardKey` is set (keys are secrets); with
 * `consumerHeader` the verified consumer's name is sent upstream in that header instead.
 */
export class ApiKeySet {
  readonly name: string;
  readonly #header: string;
  readonly #forward: boolean;
  readonly #consumerHeader: string | undefined;
  readonly #byDigest = new Map<string, Consumer>();

  constructor(cfg: ApiKeySetConfig) {
    this.name = cfg.name;
    this.#header = cfg.header.toLowerCase();
    this.#forward = cfg.forwardKey;
    this.#consumerHeader = cfg.consumerHeader?.toLowerCase();
    const all = cfg.file ? [...cfg.keys, ...readKeyFile(cfg.file)] : cfg.keys;
    for (const k of all) {
      const headerValue = isHeaderSafe(k.consumer) ? k.consumer : undefined;
      this.#byDigest.set(k.sha256.toLowerCase(), {
        consumer: k.consumer,
        metadata: Object.freeze({ ...(k.metadata ?? {}) }),
        headerValue,
      });
    }
  }

  /** Number of distinct keys loaded. */
  get size(): number {
    return this.#byDigest.size;
  }

  /** The presented key, if the request carries this set's header. */
  extract(ctx: RequestContext): string | undefined {
    const v = ctx.headers[this.#header];
    const key = Array.isArray(v) ? v[0] : v;
    return key === undefined || key === '' ? undefined : key;
  }

  /** Authenticate a presented key; on success records consumer and metadata on the request. */
  accept(ctx: RequestContext, key: string): boolean {
    const c = this.#byDigest.get(createHash('sha256').update(key).digest('hex'));
    if (!c) return false;
    ctx.consumer = c.consumer;
    ctx.consumerMetadata = c.metadata;
    if (!this.#forward) ctx.upstreamStrip.push(this.#header);
    if (this.#consumerHeader && c.headerValue !== undefined)
      ctx.upstreamHeaders.push(this.#consumerHeader, c.headerValue);
    return true;
  }
}

/** A key file is either `[{ consumer, sha256, metadata? }]` or `{ "keys": [...] }`. */
function readKeyFile(file: string): KeyEntry[] {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as KeyEntry[] | { keys: KeyEntry[] };
  const keys = Array.isArray(parsed) ? parsed : parsed.keys;
  if (!Array.isArray(keys)) throw new Error(`API key file ${file}: expected an array of { consumer, sha256 }`);
  for (const k of keys) {
    if (typeof k?.consumer !== 'string' || !/^[0-9a-fA-F]{64}$/.test(String(k?.sha256)))
      throw new Error(`API key file ${file}: each key needs a consumer and a 64-hex sha256`);
  }
  return keys;
}

/** The SHA-256 hex digest to store in config for a key (operators: `printf %s "$KEY" | sha256sum`). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

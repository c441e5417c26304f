import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Static } from '@sinclair/typebox';
import type { ApiKeySetSchema } from '../../config/schema/auth.js';
import type { RequestContext } from '../filter.js';

export type ApiKeySetConfig = Static<typeof ApiKeySetSchema>;

interface Consumer {
  consumer: string;
  metadata: Readonly<Record<string, string>>;
}

/**
 * API keys stored as SHA-256 digests (config or a JSON file of the same shape): a presented key is
 * hashed and looked up in a map, so lookup cost does not depend on which key matched.
 */
export class ApiKeySet {
  readonly name: string;
  readonly #header: string;
  readonly #byDigest = new Map<string, Consumer>();

  constructor(cfg: ApiKeySetConfig) {
    this.name = cfg.name;
    this.#header = cfg.header.toLowerCase();
    const fromFile = cfg.file ? (JSON.parse(readFileSync(cfg.file, 'utf8')) as { keys: ApiKeySetConfig['keys'] }).keys : [];
    for (const k of [...cfg.keys, ...fromFile]) this.#byDigest.set(k.sha256.toLowerCase(), { consumer: k.consumer, metadata: k.metadata ?? {} });
  }

  /** The presented key, if the request carries this set's header. */
  extract(ctx: RequestContext): string | undefined {
    const v = ctx.headers[this.#header];
    return Array.isArray(v) ? v[0] : v;
  }

  /** Authenticate a presented key; records the consumer on the request. */
  accept(ctx: RequestContext, key: string): boolean {
    const c = this.#byDigest.get(createHash('sha256').update(key).digest('hex'));
    if (!c) return false;
    ctx.consumer = c.consumer;
    ctx.consumerMetadata = c.metadata;
    ctx.upstreamStrip.push(this.#header);
    return true;
  }
}

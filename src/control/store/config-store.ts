import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Config } from '../../config/schema/index.js';
import { deepFreeze, type ConfigError } from '../../config/validate.js';

/** One stored config version. */
export interface ConfigVersion<T = Config> {
  version: number;
  hash: string;
  config: T;
  createdAt: string;
  /** Who or what made it: "file", "admin:<token name>", "rollback:<n>", "hub". */
  source: string;
}

interface StateFile<T> {
  current: number;
  versions: Array<ConfigVersion<T>>;
}

const KEEP_VERSIONS = 50;
/**
 * History is also bounded by size: versions are kept, newest first, while their JSON fits in this
 * many bytes (the current one and the one before it always). A 100,000-endpoint config is ~12 MB of
 * JSON, and the whole state file is rewritten (and fsynced) on every change.
 */
const KEEP_BYTES = 32 * 1024 * 1024;

/** Content hash of a config (stable key order is not needed: configs are built deterministically). */
export function configHash(config: unknown): string {
  return hashOfText(JSON.stringify(config));
}

function hashOfText(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * Versioned, persisted config history. Versions only grow: a rollback is a new version with an old
 * config, so an ETag never names two different documents. Writes are atomic (temp file, fsync,
 * rename, fsync of the directory), so a crash leaves the old or the new state, never a torn one.
 */
export class ConfigStore<T = Config> {
  readonly #file: string;
  #versions: Array<ConfigVersion<T>> = [];
  /** Each kept version's JSON, made once (a commit writes them all again, but stringifies only the new one). */
  readonly #texts = new WeakMap<ConfigVersion<T>, string>();
  #current = 0;

  readonly #keepBytes: number;

  constructor(stateDir: string, fileName = 'state.json', opts: { keepBytes?: number } = {}) {
    this.#file = join(stateDir, fileName);
    this.#keepBytes = opts.keepBytes ?? KEEP_BYTES;
  }

  /**
   * Validate the current version again with `check` (the current schema and rules; a persisted config
   * is stored resolved, so without `${VAR}` substitution). A config stored by an older version gets the
   * current defaults, committed as a new version (`defaults:<n>`) when they change it, so a new field is
   * never missing at compile time. Unchanged, the version keeps its number but holds the validated
   * document, which carries what validation derives beside the JSON (parsed durations). Returns the
   * errors of one the current version refuses, each path naming this file and the version, for the
   * caller to stop its start with.
   */
  async revalidate(
    check: (value: unknown) => { ok: true; config: T } | { ok: false; errors: ConfigError[] },
  ): Promise<ConfigError[]> {
    const cur = this.current!;
    const checked = check(structuredClone(cur.config));
    if (!checked.ok)
      return checked.errors.map((e) => ({
        path: `${this.#file} (version ${cur.version}) ${e.path}`,
        message: e.message,
      }));
    const { changed } = await this.commit(checked.config, `defaults:${cur.version}`);
    if (!changed)
      this.#versions = this.#versions.map((v) => (v === cur ? deepFreeze({ ...cur, config: checked.config }) : v));
    return [];
  }

  /**
   * Load persisted state; false when there is none (first start: seed from the config file).
   * Temp files a killed write left beside the state file are removed first (the state file is the truth).
   */
  async load(): Promise<boolean> {
    await removeStaleTempFiles(this.#file);
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    const state = JSON.parse(text) as StateFile<T>;
    this.#versions = state.versions.map((v) => deepFreeze(v));
    this.#current = state.current;
    return this.#versions.length > 0;
  }

  get current(): ConfigVersion<T> | undefined {
    return this.#versions.find((v) => v.version === this.#current);
  }

  get(version: number): ConfigVersion<T> | undefined {
    return this.#versions.find((v) => v.version === version);
  }

  list(): Array<Omit<ConfigVersion<T>, 'config'> & { current: boolean }> {
    return this.#versions.map(({ config: _c, ...meta }) => ({ ...meta, current: meta.version === this.#current }));
  }

  /**
   * Record a validated config as the new current version (no-op when identical to current): the next
   * number, or `atLeast` when that is higher (a number replicas agreed on; versions still only grow).
   */
  async commit(config: T, source: string, atLeast = 0): Promise<{ version: ConfigVersion<T>; changed: boolean }> {
    const configText = JSON.stringify(config);
    const hash = hashOfText(configText);
    const cur = this.current;
    if (cur && cur.hash === hash) return { version: cur, changed: false };
    const last = this.#versions.at(-1)?.version ?? 0;
    const entry = deepFreeze({
      version: Math.max(last + 1, atLeast),
      hash,
      config,
      createdAt: new Date().toISOString(),
      source,
    });
    this.#texts.set(entry, JSON.stringify({ ...entry, config: undefined }).slice(0, -1) + `,"config":${configText}}`);
    const versions = this.#keep([...this.#versions, entry]);
    await this.#persist({ current: entry.version, versions });
    this.#versions = versions;
    this.#current = entry.version;
    return { version: entry, changed: true };
  }

  /** The newest versions within KEEP_VERSIONS and KEEP_BYTES (at least the newest two). */
  #keep(versions: Array<ConfigVersion<T>>): Array<ConfigVersion<T>> {
    let bytes = 0;
    let from = versions.length;
    while (from > 0 && versions.length - from < KEEP_VERSIONS) {
      bytes += this.#textOf(versions[from - 1]).length;
      if (bytes > this.#keepBytes && versions.length - from >= 2) break;
      from--;
    }
    return versions.slice(from);
  }

  #textOf(v: ConfigVersion<T>): string {
    let text = this.#texts.get(v);
    if (text === undefined) this.#texts.set(v, (text = JSON.stringify(v)));
    return text;
  }

  #persist(state: StateFile<T>): Promise<void> {
    return writeFileAtomic(
      this.#file,
      `{"current":${state.current},"versions":[${state.versions.map((v) => this.#textOf(v)).join(',')}]}`,
    );
  }
}

/**
 * Replace `file` atomically and durably (temp file, fsync, rename, fsync of the directory): a crash
 * leaves the old or the new content, never a torn one.
 */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = tempFileOf(file, process.pid);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** The temp file writeFileAtomic writes `file` through: `<file>.<pid>.tmp`, one per writing process. */
function tempFileOf(file: string, pid: number): string {
  return `${file}.${pid}.tmp`;
}

/**
 * Remove the temp files of `file` that a process killed between open and rename left behind
 * (`state.json.<pid>.tmp`, nothing else). Call it on start, before the first write. A temp file whose
 * pid is a running process other than this one is kept: another process may be writing it (two
 * processes on one state directory is a mistake, but deleting its file would fail its write). A dead
 * process's pid reused by an unrelated one only delays the clean-up to a later start. In a container
 * the gateway is pid 1 on every start, so a temp file named with this process's own pid is stale too.
 * Returns the names removed.
 */
export async function removeStaleTempFiles(file: string): Promise<string[]> {
  const dir = dirname(file);
  const prefix = `${basename(file)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = name.slice(prefix.length, -'.tmp'.length);
    if (!/^[1-9][0-9]*$/.test(pid) || (Number(pid) !== process.pid && isRunning(Number(pid)))) continue;
    await rm(join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

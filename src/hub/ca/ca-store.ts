import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../control/store/config-store.js';

/** One root of a generated CA: its certificate and, while it may sign (signing or next), its key (PEM). */
export interface RootMaterial {
  cert: string;
  key?: string;
}

/**
 * A generated CA as stored: which root signs, which is trusted beside it during a rotation (`next`
 * before it signs, `previous` after it stopped), and each root's material by name.
 */
export interface CaState {
  signing: string;
  next?: string;
  previous?: string;
  roots: Record<string, RootMaterial>;
}

/**
 * Where a generated CA lives: the hub's state directory (one hub), or etcd (replicas share it).
 * `save(state, { ifAbsent: true })` stores only when nothing is stored yet and returns what is stored
 * then: two replicas generating a first root at once end up with the same one.
 */
export interface CaStateStore {
  load(): Promise<CaState | undefined>;
  save(state: CaState, opts?: { ifAbsent?: boolean }): Promise<CaState>;
}

/** The first generated root's file name (kept for state directories made before rotation existed). */
const FIRST_ROOT = 'mesh-ca';
/** Which roots are in use; written after the roots' files, so it is the commit point of a step. */
const ROOTS_INDEX = 'roots.json';

/**
 * A CA in a directory: `<name>.crt` and `<name>.key` (0600) per root, and `roots.json` naming the
 * signing, next and previous roots. A directory from before rotation has only `mesh-ca.{crt,key}`.
 */
export class FileCaStore implements CaStateStore {
  constructor(readonly dir: string) {}

  async load(): Promise<CaState | undefined> {
    const index = await this.#index();
    if (!index) return undefined;
    const names = [index.signing, index.next, index.previous].filter((n) => n !== undefined);
    const roots: Record<string, RootMaterial> = {};
    for (const name of names) {
      const cert = await readFile(join(this.dir, `${name}.crt`), 'utf8');
      const key = await readFile(join(this.dir, `${name}.key`), 'utf8').catch(() => undefined);
      roots[name] = key && name !== index.previous ? { cert, key } : { cert };
    }
    return { ...index, roots };
  }

  async save(state: CaState, opts: { ifAbsent?: boolean } = {}): Promise<CaState> {
    if (opts.ifAbsent) {
      const stored = await this.load();
      if (stored) return stored;
    }
    for (const [name, root] of Object.entries(state.roots)) {
      // The key first: a start killed in between finds no certificate and no index naming it.
      if (root.key) await writeFileAtomic(join(this.dir, `${name}.key`), root.key);
      await writeFileAtomic(join(this.dir, `${name}.crt`), root.cert);
    }
    const { roots: _r, ...index } = state;
    await writeFileAtomic(join(this.dir, ROOTS_INDEX), JSON.stringify(index));
    // Files of retired roots, and keys of roots that sign no more.
    const keep = new Set(Object.entries(state.roots).flatMap(([n, r]) => [`${n}.crt`, ...(r.key ? [`${n}.key`] : [])]));
    const files = await readdir(this.dir);
    await Promise.all(
      files
        .filter((f) => (f.endsWith('.crt') || f.endsWith('.key')) && !keep.has(f))
        .map((f) => rm(join(this.dir, f), { force: true })),
    );
    return state;
  }

  async #index(): Promise<Omit<CaState, 'roots'> | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, ROOTS_INDEX), 'utf8')) as Omit<CaState, 'roots'>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const first = await readFile(join(this.dir, `${FIRST_ROOT}.crt`)).catch(() => undefined);
    return first ? { signing: FIRST_ROOT } : undefined;
  }
}

export { FIRST_ROOT };

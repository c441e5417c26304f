import type { ToWorker, ToPrimary } from '../control/ipc/messages.js';
import { WorkerRuntime } from './worker-runtime.js';

/** Entry of a node:cluster worker: the worker role over process IPC. */
export function runForkedWorker(): void {
  const runtime = new WorkerRuntime((msg: ToPrimary) => process.send?.(msg));
  process.on('message', (msg: ToWorker) => runtime.handle(msg));
  // SIGTERM/SIGINT go to the whole process group; the primary orchestrates the drain.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.send?.({ t: 'booted' } satisfies ToPrimary);
}

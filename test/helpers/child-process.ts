import type { ChildProcess } from 'node:child_process';

/** Signal a child this test started and wait for it to exit; a child that already exited is left alone. */
export async function endChild(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  // A process ended by a signal has exitCode null and signalCode set: it will not exit again.
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

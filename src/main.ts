import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFile } from './config/load.js';
import { startGateway, StartupError } from './process/gateway.js';
import { runForkedWorker } from './process/forked-worker.js';
import { logger } from './observability/logger.js';
import { HubStartupError, startHub } from './hub/control-plane.js';

const USAGE = `usage: meridian <command> [options]
  start -c FILE [--state-dir DIR]   run the gateway (the config file seeds the state on first start)
  control-plane -c FILE [--state-dir DIR]   run the management server (hub) for a fleet of gateways
  validate -c FILE                  check a config file; exit 1 with every error's path
  version                           print the version`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'state-dir': { type: 'string', default: './.meridian' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0];
  if (command === 'version') return (void console.log(version()), 0);
  if (!command || values.help || !values.config) return (void console.error(USAGE), command ? 2 : 0);
  if (command === 'validate') {
    const r = await loadConfigFile(values.config);
    if (r.ok) return (void console.log(`${values.config}: valid`), 0);
    for (const e of r.errors) console.error(`${e.path}: ${e.message}`);
    return 1;
  }
  if (command === 'control-plane') return runHub(values.config, values['state-dir']!);
  if (command !== 'start') return (void console.error(USAGE), 2);
  return runStart(values.config, values['state-dir']!);
}

async function runStart(configFile: string, stateDir: string): Promise<number> {
  let gw: Awaited<ReturnType<typeof startGateway>>;
  try {
    gw = await startGateway({ configFile, stateDir, workerExec: fileURLToPath(import.meta.url) });
  } catch (e) {
    if (e instanceof StartupError) {
      for (const err of e.errors) logger.error({ path: err.path }, err.message);
      return 1;
    }
    throw e;
  }
  const running = gw;
  process.on('SIGHUP', () => void running.reload());
  const shutdown = () => {
    logger.info('draining');
    void running.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  // Logged only once signals are handled, so whoever waits for "ready" can send SIGHUP at once.
  logger.info({ version: running.primary.current.version, ...running.addresses }, 'ready');
  return -1;
}

async function runHub(configFile: string, stateDir: string): Promise<number> {
  let hub: Awaited<ReturnType<typeof startHub>>;
  try {
    hub = await startHub({ configFile, stateDir });
  } catch (e) {
    if (!(e instanceof HubStartupError)) throw e;
    for (const err of e.errors) logger.error({ path: err.path }, err.message);
    return 1;
  }
  const running = hub;
  const shutdown = () => void running.stop().then(() => process.exit(0));
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  logger.info({ address: running.address, version: running.store.current!.version }, 'ready');
  return -1;
}

if (cluster.isWorker) runForkedWorker();
else {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (e) => {
      logger.fatal({ err: e }, 'fatal');
      process.exit(1);
    },
  );
}

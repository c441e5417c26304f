import { spawn, type ChildProcess } from 'node:child_process';
import { promises as dnsPromises } from 'node:dns';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endChild } from './child-process.js';

/** Names and their addresses, in answer order (dnsmasq answers a hosts file's lines in file order). */
export type HostRecords = Record<string, string[]>;

/**
 * A real dnsmasq (`/usr/sbin/dnsmasq`, else `dnsmasq` on PATH; .ci/run installs dnsmasq-base) on
 * 127.0.0.1 and a free port, answering only from its hosts file: names under `.test` that it does
 * not list are NXDOMAIN (`--local=/test/`), names it lists without an AAAA line NODATA.
 */
export interface TestDnsmasq {
  port: number;
  /** "127.0.0.1:port", for gateway.dns.servers. */
  server: string;
  /** Rewrite the hosts file and SIGHUP dnsmasq; resolves once it has read the new file. */
  setHosts(records: HostRecords): Promise<void>;
  /** End the server (an outage): queries are refused. */
  stop(): Promise<void>;
  /** Start it again on the same port with the current hosts file. */
  start(): Promise<void>;
  /** Stop it and remove its files. */
  close(): Promise<void>;
}

const BINARY = existsSync('/usr/sbin/dnsmasq') ? '/usr/sbin/dnsmasq' : 'dnsmasq';

/** A port free for UDP and TCP on 127.0.0.1 (dnsmasq serves both). */
async function freeDnsPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const port = udp.address().port;
    await new Promise<void>((r) => udp.close(() => r()));
    const tcp = net.createServer();
    const free = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    if (free) {
      await new Promise((r) => tcp.close(r));
      return port;
    }
  }
  throw new Error('no port free for both UDP and TCP');
}

function hostsFile(records: HostRecords): string {
  return Object.entries(records)
    .flatMap(([name, ips]) => ips.map((ip) => `${ip} ${name}\n`))
    .join('');
}

/** Wait until `condition` holds, polling every 20 ms, for at most `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`dnsmasq: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function startDnsmasq(records: HostRecords): Promise<TestDnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-dnsmasq-'));
  const hostsPath = join(dir, 'hosts');
  writeFileSync(hostsPath, hostsFile(records));
  const port = await freeDnsPort();
  const server = `127.0.0.1:${port}`;
  let proc: ChildProcess | undefined;
  let log = '';
  // dnsmasq logs "read <file> - N names" at start and after each SIGHUP.
  const reads = () => log.split(`read ${hostsPath}`).length - 1;

  const start = async () => {
    log = '';
    proc = spawn(
      BINARY,
      [
        '--keep-in-foreground',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        `--addn-hosts=${hostsPath}`,
        '--local=/test/',
        '--local-ttl=1',
        // Records in the hosts file's order, every answer: a logical DNS cluster takes the first one,
        // and dnsmasq's default round-robin would move it between lookups.
        '--no-round-robin',
        `--pid-file=${join(dir, 'pid')}`,
        '--conf-file=/dev/null',
        '--log-facility=-',
        '--user=root',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
    const p = proc;
    await until(() => p.exitCode === null && reads() > 0, `dnsmasq to start (log: ${log})`);
    // Answers only once the sockets are bound; an NXDOMAIN from it is the proof.
    const probe = new dnsPromises.Resolver({ timeout: 200, tries: 1 });
    probe.setServers([server]);
    await until(
      () =>
        probe.resolve4('probe.test').then(
          () => true,
          (e: NodeJS.ErrnoException) => e.code === 'ENOTFOUND',
        ),
      'dnsmasq to answer',
    );
  };

  const stop = () => endChild(proc, 'SIGTERM');

  const setHosts = async (next: HostRecords) => {
    const before = reads();
    writeFileSync(hostsPath, hostsFile(next));
    proc!.kill('SIGHUP');
    await until(() => reads() > before, 'dnsmasq to re-read its hosts file');
  };

  const close = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };

  await start();
  return { port, server, setHosts, stop, start, close };
}

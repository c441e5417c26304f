import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { MAIN, REPO, writeConfig, spawnGateway } from '../helpers/gateway.js';

const run = (...args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { cwd: REPO, encoding: 'utf8' });

describe('meridian CLI', () => {
  it('prints the package version', () => {
    const r = run('version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
  });

  it('validates the embedded default config', () => {
    const r = run('validate', '-c', join(REPO, 'config/gateway.yaml'));
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/valid/);
  });

  it('exits 1 listing every error with its path', () => {
    // Schema errors are all listed; cross-references are checked once the schema passes.
    const file = writeConfig({
      clusters: [{ name: 'c', endpoints: [{ address: 'bad', weight: 0 }] }],
      routes: [{ name: 'r', match: {}, cluster: 'nope' }],
    });
    const r = run('validate', '-c', file);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('clusters[0].endpoints[0].address: expected host:port');
    expect(r.stderr).toMatch(/clusters\[0\]\.endpoints\[0\]\.weight: /);
    const refs = writeConfig({
      clusters: [{ name: 'c', endpoints: [{ address: '127.0.0.1:1' }] }],
      routes: [
        { name: 'r', match: {}, cluster: 'nope' },
        { name: 'r', match: {}, cluster: 'c' },
      ],
    });
    const r2 = run('validate', '-c', refs);
    expect(r2.status).toBe(1);
    expect(r2.stderr).toContain('routes[0].cluster: unknown cluster "nope"');
    expect(r2.stderr).toMatch(/routes\[1\]\.name: duplicate name "r"/);
  });

  it('reports a YAML syntax error', () => {
    const file = writeConfig({});
    writeFileSync(file, 'routes: [ {');
    const r = run('validate', '-c', file);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/\(syntax\)/);
  });

  it('serves the embedded default config out of the box', async () => {
    // The embedded default must serve its echo route out of the box.
    const cfg = readFileSync(join(REPO, 'config/gateway.yaml'), 'utf8')
      .replace('0.0.0.0:8080', '127.0.0.1:0')
      .replace('127.0.0.1:9901', '127.0.0.1:0')
      .replace('workers: auto', 'workers: 1');
    const tmp = writeConfig({});
    writeFileSync(tmp, cfg);
    const gw = await spawnGateway(tmp);
    try {
      const r = await request(`${gw.url}/__meridian/echo`);
      expect(r.statusCode).toBe(200);
      expect(await r.body.text()).toBe('meridian is running\n');
    } finally {
      await gw.stop();
    }
  });
});

import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO } from '../helpers/gateway.js';

const dockerfile = readFileSync(join(REPO, 'docker/Dockerfile'), 'utf8');

describe('docker/ files', () => {
  it('copies only paths that exist in the repo (dist/ comes from the build stage)', () => {
    const copies = dockerfile.split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
    expect(copies.length).toBeGreaterThan(2);
    for (const line of copies) {
      const parts = line.split(/\s+/).slice(1);
      for (const src of parts.slice(0, -1)) expect(existsSync(join(REPO, src)), `${src} (from "${line}")`).toBe(true);
    }
    expect(dockerfile).toMatch(/COPY --from=build \/app\/dist \.\/dist/);
    expect(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).scripts.build).toContain('tsc');
  });

  it("runs as a non-root user with a health check on /ready and the tests' start command", () => {
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/HEALTHCHECK[\s\S]*\/ready/);
    expect(dockerfile).toContain('ENTRYPOINT ["node", "dist/main.js"]');
    expect(dockerfile).toContain(
      'CMD ["start", "-c", "/etc/meridian/gateway.yaml", "--state-dir", "/var/lib/meridian"]',
    );
  });

  it('has Kubernetes manifests that parse, with /ready and /live probes and a preStop drain', () => {
    const dir = join(REPO, 'docker/k8s');
    const docs = readdirSync(dir).flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS()),
    );
    expect(docs.map((d) => d.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'ConfigMap',
      'Deployment',
      'PodDisruptionBudget',
      'Service',
      'ServiceAccount',
    ]);
    const c = docs.find((d) => d.kind === 'Deployment').spec.template.spec.containers[0];
    // Endpoint discovery runs as its own ServiceAccount with read-only access to EndpointSlices and Services.
    const sa = docs.find((d) => d.kind === 'ServiceAccount').metadata.name;
    expect(docs.find((d) => d.kind === 'Deployment').spec.template.spec.serviceAccountName).toBe(sa);
    const role = docs.find((d) => d.kind === 'ClusterRole');
    expect(
      role.rules.map((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) => [
        r.apiGroups.join(),
        r.resources.join(),
        [...r.verbs].sort().join(),
      ]),
    ).toEqual([
      ['discovery.k8s.io', 'endpointslices', 'get,list,watch'],
      ['', 'services', 'get,list,watch'],
    ]);
    const binding = docs.find((d) => d.kind === 'ClusterRoleBinding');
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toEqual([expect.objectContaining({ kind: 'ServiceAccount', name: sa })]);
    expect(c.readinessProbe.httpGet.path).toBe('/ready');
    expect(c.livenessProbe.httpGet.path).toBe('/live');
    expect(c.lifecycle.preStop.exec.command.join(' ')).toContain('/drain');
    expect(c.resources.requests.cpu).toBeDefined();
  });

  it('ships configs the gateway accepts', async () => {
    const { validateConfig } = await import('../../src/config/validate.js');
    const { parse } = await import('yaml');
    const compose = validateConfig(parse(readFileSync(join(REPO, 'docker/gateway.yaml'), 'utf8')), {
      MERIDIAN_ADMIN_TOKEN: 'test-token-123',
    });
    expect(compose.ok ? [] : compose.errors).toEqual([]);
    const cm = parseAllDocuments(readFileSync(join(REPO, 'docker/k8s/configmap.yaml'), 'utf8'))[0].toJS();
    const k8s = validateConfig(parse(cm.data['gateway.yaml']), { MERIDIAN_ADMIN_TOKEN: 'test-token-123' });
    expect(k8s.ok ? [] : k8s.errors).toEqual([]);
  });
  it('has Gateway API manifests: RBAC that reads the objects and writes only their status, a GatewayClass for the configured controller, a Gateway and an HTTPRoute', async () => {
    const docs = parseAllDocuments(readFileSync(join(REPO, 'docker/k8s-gateway-api/gateway-api.yaml'), 'utf8')).map(
      (d) => d.toJS(),
    );
    expect(docs.map((d) => d.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'Gateway',
      'GatewayClass',
      'HTTPRoute',
    ]);
    const rules = docs.find((d) => d.kind === 'ClusterRole').rules as Array<{
      apiGroups: string[];
      resources: string[];
      verbs: string[];
    }>;
    const writes = rules.filter((r) => r.verbs.some((v) => !['get', 'list', 'watch'].includes(v)));
    expect(writes.flatMap((r) => r.resources).every((r) => r.endsWith('/status'))).toBe(true);
    expect(writes.flatMap((r) => r.verbs)).toEqual(['update']);
    const { GatewayApiSchema } = await import('../../src/config/schema/gateway.js');
    const { Value } = await import('@sinclair/typebox/value');
    expect(docs.find((d) => d.kind === 'GatewayClass').spec.controllerName).toBe(
      Value.Default(GatewayApiSchema, {}).controllerName,
    );
    expect(docs.find((d) => d.kind === 'ClusterRoleBinding').subjects[0].name).toBe('meridian');
  });

  it('has a management server manifest whose hub document validates', async () => {
    const { validateHubConfig } = await import('../../src/hub/config.js');
    const { parse } = await import('yaml');
    const docs = parseAllDocuments(readFileSync(join(REPO, 'docker/k8s-hub/control-plane.yaml'), 'utf8')).map((d) =>
      d.toJS(),
    );
    expect(docs.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Service']);
    const c = docs.find((d) => d.kind === 'Deployment').spec.template.spec.containers[0];
    expect(c.args.slice(0, 1)).toEqual(['control-plane']);
    expect(c.readinessProbe.httpGet.path).toBe('/ready');
    const hub = validateHubConfig(parse(docs.find((d) => d.kind === 'ConfigMap').data['hub.yaml']), {
      HUB_OPS_TOKEN: 'ops-token-123',
    });
    expect(hub.ok ? [] : hub.errors).toEqual([]);
    const missing = validateHubConfig(parse(docs.find((d) => d.kind === 'ConfigMap').data['hub.yaml']), {});
    expect(missing.ok).toBe(false);
  });
});

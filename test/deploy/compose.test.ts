/**
 * docker-compose.yml cannot be brought up here (no Docker engine): check its structure instead —
 * services, pinned images new enough for Worker Versioning, startup order, the search attributes
 * the workflows need, and worker commands that point at files in the repository. Its one-shot
 * setup script (deploy/compose-setup.sh) runs against real servers in
 * test/deploy/composeSetup.test.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DEV_SERVER_DYNAMIC_CONFIG } from '../../src/temporal/devServer';
import { SEARCH_ATTRIBUTE_REGISTRATIONS } from '../../src/temporal/searchAttributes';

const ROOT = path.join(__dirname, '..', '..');
interface Service {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  entrypoint?: string[];
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  ports?: string[];
  environment?: Record<string, string>;
}
const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;

describe('docker-compose.yml', () => {
  it('has the database, its schema job, the server, its namespace job, the UI and both workers', () => {
    expect(Object.keys(services).sort()).toEqual(['gpu-node', 'orchestrator', 'postgresql', 'temporal', 'temporal-namespace', 'temporal-schema', 'temporal-ui'].sort());
  });

  it('pins every image', () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(service.image, name).not.toMatch(/:latest$/);
    }
  });

  it('runs a server and UI that have Worker Versioning (server >= 1.27.1, UI >= 2.36.0), the admin tools of the same version', () => {
    const version = (image: string | undefined): number[] => (image?.split(':')[1] ?? '').split('.').map(Number);
    const atLeast = (have: number[], want: number[]): boolean => {
      for (let i = 0; i < want.length; i++) if ((have[i] ?? 0) !== want[i]) return (have[i] ?? 0) > want[i]!;
      return true;
    };
    expect(services.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(atLeast(version(services.temporal!.image), [1, 27, 1]), services.temporal!.image).toBe(true);
    expect(atLeast(version(services['temporal-ui']!.image), [2, 36, 0]), services['temporal-ui']!.image).toBe(true);
    for (const job of ['temporal-schema', 'temporal-namespace']) expect(version(services[job]!.image), job).toEqual(version(services.temporal!.image));
  });

  it('starts in order: database healthy → schema → server → namespace and search attributes → UI and workers', () => {
    expect(services['temporal-schema']!.depends_on).toEqual({ postgresql: { condition: 'service_healthy' } });
    expect(services.temporal!.depends_on).toEqual({ 'temporal-schema': { condition: 'service_completed_successfully' } });
    expect(services['temporal-namespace']!.depends_on).toEqual({ temporal: { condition: 'service_started' } });
    for (const next of ['temporal-ui', 'orchestrator']) expect(services[next]!.depends_on, next).toEqual({ 'temporal-namespace': { condition: 'service_completed_successfully' } });
    expect(services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services['temporal-schema']!.environment).toMatchObject({ POSTGRES_SEEDS: 'postgresql', POSTGRES_USER: 'temporal' });
    expect(services['temporal-namespace']!.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233' });
    expect(services['temporal-ui']!.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233' });
  });

  it('runs the setup jobs from the script in the repository', () => {
    for (const [job, step] of [['temporal-schema', 'schema'], ['temporal-namespace', 'namespace']] as const) {
      const mount = services[job]!.volumes?.find((volume) => volume.startsWith('./deploy/compose-setup.sh:'));
      expect(mount, job).toBeDefined();
      expect(existsSync(path.join(ROOT, 'deploy', 'compose-setup.sh'))).toBe(true);
      expect([...(services[job]!.entrypoint ?? []), ...([] as string[]).concat(services[job]!.command ?? [])], job).toEqual(['/bin/sh', mount!.split(':')[1], step]);
    }
  });

  it("gives the server the dev server's dynamic config, from a file in the repository", () => {
    const mount = services.temporal!.volumes?.find((volume) => volume.endsWith(':/etc/temporal/config/dynamicconfig/timeshare.yaml:ro'));
    expect(mount).toBeDefined();
    expect(services.temporal!.environment).toMatchObject({ DYNAMIC_CONFIG_FILE_PATH: 'config/dynamicconfig/timeshare.yaml' });
    const file = parse(readFileSync(path.join(ROOT, mount!.split(':')[0]!), 'utf8')) as Record<string, { value: unknown; constraints: unknown }[]>;
    expect(Object.fromEntries(Object.entries(file).map(([key, values]) => [key, values.map((v) => v.value)]))).toEqual(
      Object.fromEntries(Object.entries(DEV_SERVER_DYNAMIC_CONFIG).map(([key, value]) => [key, [value]])),
    );
  });

  it('registers exactly the search attributes the workflows set, with their types', () => {
    const script = readFileSync(path.join(ROOT, 'deploy', 'compose-setup.sh'), 'utf8');
    const registered = [...script.matchAll(/(Timeshare\w+)=(\w+)/g)].map((m) => [m[1], m[2]]);
    expect(registered).toEqual(SEARCH_ATTRIBUTE_REGISTRATIONS.map(([name, type]) => [name, type]));
  });

  it('runs workers on a config in the repository and shares the store between them', () => {
    for (const name of ['orchestrator', 'gpu-node']) {
      const command = services[name]!.command as string[];
      expect(command[0]).toBe('worker');
      const config = command.find((arg) => arg.startsWith('/app/'))!;
      expect(existsSync(path.join(ROOT, config.replace('/app/', ''))), config).toBe(true);
      expect(command).toContain('temporal:7233');
      expect(services[name]!.volumes).toContain('timeshare-state:/app/.timeshare');
      // Metrics on every interface of the container, published on the host.
      expect(command.slice(command.indexOf('--metrics-address'))).toEqual(['--metrics-address', '0.0.0.0:9464']);
      expect((services[name]!.ports ?? []).some((port) => port.endsWith(':9464'))).toBe(true);
    }
    expect(Object.keys(compose.volumes)).toContain('timeshare-state');
  });
});

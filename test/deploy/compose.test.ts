/**
 * docker-compose.yml cannot be brought up here (no Docker engine): check its structure instead —
 * services, pinned images, startup order, the search attributes the workflows need, and worker
 * commands that point at files in the repository.
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
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  environment?: Record<string, string>;
}
const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;

describe('docker-compose.yml', () => {
  it('has the cluster, the UI, the search-attribute job and both workers', () => {
    expect(Object.keys(services).sort()).toEqual(['gpu-node', 'orchestrator', 'postgresql', 'register-search-attributes', 'temporal', 'temporal-ui'].sort());
  });

  it('pins every image', () => {
    for (const [name, service] of Object.entries(services)) {
      expect(service.image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(service.image, name).not.toMatch(/:latest$/);
    }
  });

  it('starts in order: database healthy → server healthy → search attributes registered → workers', () => {
    expect(services.temporal!.depends_on).toEqual({ postgresql: { condition: 'service_healthy' } });
    expect(services['register-search-attributes']!.depends_on).toEqual({ temporal: { condition: 'service_healthy' } });
    expect(services.orchestrator!.depends_on).toEqual({ 'register-search-attributes': { condition: 'service_completed_successfully' } });
    expect(services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services['temporal-ui']!.environment).toMatchObject({ TEMPORAL_ADDRESS: 'temporal:7233' });
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
    const script = ([] as string[]).concat(services['register-search-attributes']!.command ?? []).join(' ');
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
    }
    expect(Object.keys(compose.volumes)).toContain('timeshare-state');
  });
});

/**
 * docker-compose.yml's namespace job (deploy/compose-setup.sh namespace, POSIX sh as in the
 * admin-tools image) against a real dev server and the pinned temporal CLI: it creates a namespace
 * the server lacks and registers the search attributes the workflows set, with their types, and a
 * second run (a second `docker compose up`) changes nothing and succeeds.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startDevServer, temporalCliPath, type DevServer } from '../../src/temporal/devServer';
import { SEARCH_ATTRIBUTE_REGISTRATIONS } from '../../src/temporal/searchAttributes';

const SCRIPT = path.join(REPO_ROOT, 'deploy', 'compose-setup.sh');
const NAMESPACE = 'compose-setup-test';
/** The server's enum names of the registered types (IndexedValueType). */
const INDEXED_TYPE: Record<string, number> = { Keyword: 2, Int: 3 };

let server: DevServer;
let cliDir: string;

beforeAll(async () => {
  cliDir = path.dirname(temporalCliPath());
  server = await startDevServer({ headless: true });
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

async function runSetup(step: string): Promise<string> {
  const { stdout } = await promisify(execFile)('sh', [SCRIPT, step], {
    env: { PATH: `${cliDir}:${process.env.PATH ?? ''}`, TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: NAMESPACE },
    timeout: 150_000,
  });
  return stdout;
}

describe('deploy/compose-setup.sh namespace', () => {
  it('creates the namespace and the search attributes once, and a second run succeeds unchanged', async () => {
    expect(await runSetup('namespace')).toContain(`namespace ${NAMESPACE} and the search attributes are ready`);
    const connection = await Connection.connect({ address: server.address });
    try {
      const described = await connection.workflowService.describeNamespace({ namespace: NAMESPACE });
      expect(described.namespaceInfo?.name).toBe(NAMESPACE);
      const listed = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
      for (const [name, type] of SEARCH_ATTRIBUTE_REGISTRATIONS) expect(listed.customAttributes?.[name], name).toBe(INDEXED_TYPE[type]);
      expect(await runSetup('namespace')).toContain(`namespace ${NAMESPACE} and the search attributes are ready`);
      const again = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
      expect(again.customAttributes).toEqual(listed.customAttributes);
    } finally {
      await connection.close();
    }
  }, 300_000);

  it('refuses an unknown step with its usage', async () => {
    await expect(runSetup('everything')).rejects.toThrow(/usage: compose-setup.sh schema\|namespace/);
  });
});

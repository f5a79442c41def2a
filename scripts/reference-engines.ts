/**
 * Starts the reference engines a config names (one per rollout endpoint, one for the trainer
 * endpoint; hosts must be this machine) and, for an `openenv` environment, the OpenEnv test
 * environment (engines/openenv-env) at each server URL without a `command` (the gpu-node worker
 * starts those). Keeps them until Ctrl-C. For running a real-engine preset with `timeshare dev`:
 *
 *   npx tsx scripts/reference-engines.ts examples/reference-rl.yaml [--device auto|cpu|cuda] [--model-config PATH]
 *
 * The model config defaults to engines/reference/configs/tiny.json, and to configs/agent.json
 * (the vault task's characters) for an openenv environment.
 */
import path from 'node:path';
import { loadRunConfigFile } from '../src/config';
import { startOpenEnvServer, type ServerProcess } from '../src/engines/openenv/launch';
import { REFERENCE_DIR, startReferenceEngine, type ReferenceEngineProcess } from '../src/engines/reference/launch';

const USAGE = 'usage: npx tsx scripts/reference-engines.ts <config> [--device auto|cpu|cuda] [--model-config PATH]';

function parseArgs(argv: string[]): { configPath: string; device?: string; modelConfig?: string } {
  const [configPath, ...rest] = argv;
  if (configPath === undefined || configPath.startsWith('--')) throw new Error(USAGE);
  const out: { configPath: string; device?: string; modelConfig?: string } = { configPath };
  for (let i = 0; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]];
    if (value === undefined) throw new Error(USAGE);
    if (flag === '--device') out.device = value;
    else if (flag === '--model-config') out.modelConfig = path.resolve(value);
    else throw new Error(`${USAGE}\nunknown flag ${flag}`);
  }
  return out;
}

function localPort(url: string): number {
  const { hostname, port } = new URL(url);
  if (!['127.0.0.1', 'localhost'].includes(hostname)) throw new Error(`${url}: the reference processes start on this machine only`);
  return Number(port);
}

async function main(): Promise<void> {
  const { configPath, device, modelConfig } = parseArgs(process.argv.slice(2));
  const { config } = loadRunConfigFile(configPath);
  const { rollout, trainer, environment } = config.engine;
  if (rollout.kind === 'simulated' || trainer.kind !== 'http') throw new Error(`${configPath} does not use real engines`);
  const configFile = modelConfig ?? path.join(REFERENCE_DIR, 'configs', environment.kind === 'openenv' ? 'agent.json' : 'tiny.json');
  const processes: (ReferenceEngineProcess | ServerProcess)[] = [];
  const stopAll = async () => {
    for (const process of processes) await process.stop();
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.once('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  try {
    if (environment.kind === 'openenv') {
      for (const server of environment.servers.filter((s) => s.command === undefined)) {
        const env = await startOpenEnvServer({ port: localPort(server.url), maxSessions: environment.sessionsPerServer });
        processes.push(env);
        console.log(`OpenEnv environment server pid ${env.pid} serves ${env.url}`);
      }
    }
    for (const url of [...rollout.endpoints, trainer.endpoint]) {
      const engine = await startReferenceEngine({ port: localPort(url), configPath: configFile, ...(device === undefined ? {} : { device }) });
      processes.push(engine);
      console.log(`reference engine pid ${engine.pid} serves ${engine.url} (${path.basename(configFile)})`);
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  console.log('all up; Ctrl-C stops them');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});

/**
 * Starts the reference engines a config names (one per rollout endpoint, one for the trainer
 * endpoint; hosts must be this machine) and keeps them until Ctrl-C. For running a real-engine
 * preset with `timeshare dev`:
 *
 *   npx tsx scripts/reference-engines.ts examples/reference-rl.yaml [--device auto|cpu|cuda]
 */
import { loadRunConfigFile } from '../src/config';
import { startReferenceEngine, type ReferenceEngineProcess } from '../src/engines/reference/launch';

async function main(): Promise<void> {
  const [configPath, flag, device] = process.argv.slice(2);
  if (configPath === undefined || (flag !== undefined && flag !== '--device')) {
    throw new Error('usage: npx tsx scripts/reference-engines.ts <config> [--device auto|cpu|cuda]');
  }
  const { config } = loadRunConfigFile(configPath);
  const { rollout, trainer } = config.engine;
  if (rollout.kind === 'simulated' || trainer.kind !== 'http') throw new Error(`${configPath} does not use real engines`);
  const urls = [...rollout.endpoints, trainer.endpoint];
  const engines: ReferenceEngineProcess[] = [];
  const stopAll = async () => {
    for (const engine of engines) await engine.stop();
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(0)));
  process.once('SIGTERM', () => void stopAll().then(() => process.exit(0)));
  try {
    for (const url of urls) {
      const { hostname, port } = new URL(url);
      if (!['127.0.0.1', 'localhost'].includes(hostname)) throw new Error(`${url}: the reference engines start on this machine only`);
      const engine = await startReferenceEngine({ port: Number(port), ...(device === undefined ? {} : { device }) });
      engines.push(engine);
      console.log(`reference engine pid ${engine.pid} serves ${engine.url}`);
    }
  } catch (error) {
    await stopAll();
    throw error;
  }
  console.log('all engines up; Ctrl-C stops them');
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});

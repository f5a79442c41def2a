/**
 * What the run commands share once they run: the config they were given and the Temporal server
 * they talk to. Loaded by the commands that need it, not by `--help` (src/cli/main.ts).
 */
import { loadRunConfigFile, resolveRunId, type ParsedRunConfig } from '../config';
import { addressProblem } from '../config/address';
import { CliError } from './errors';
import { EXIT } from './exitCodes';
import { resolveSecurity, type SecurityFlags } from '../temporal/security';
import type { TemporalTarget, WorkerContext } from '../workers/options';
import { runtimePaths } from '../workers/runtime';

export interface ConnectionFlags extends SecurityFlags {
  address?: string;
  namespace?: string;
}

export function loadConfig(configPath: string): { parsed: ParsedRunConfig; runId: string } {
  const parsed = loadRunConfigFile(configPath);
  return { parsed, runId: resolveRunId(parsed.config, configPath) };
}

/**
 * Flags override the config; the config overrides TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (and the
 * TLS / API key variables, see src/temporal/security.ts); then the defaults.
 */
export function target(flags: ConnectionFlags, parsed?: ParsedRunConfig): TemporalTarget {
  return {
    address: checkedAddress(flags, parsed),
    namespace: flags.namespace ?? parsed?.config.temporal.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default',
    security: resolveSecurity(parsed?.config.temporal, flags),
  };
}

/** The address to connect to, from the first source that names one; a malformed one is a usage error naming its source. */
function checkedAddress(flags: ConnectionFlags, parsed: ParsedRunConfig | undefined): string {
  const [address, source] =
    flags.address !== undefined
      ? [flags.address, '--address']
      : parsed?.config.temporal.address !== undefined
        ? [parsed.config.temporal.address, 'temporal.address in the config']
        : process.env.TEMPORAL_ADDRESS !== undefined
          ? [process.env.TEMPORAL_ADDRESS, '$TEMPORAL_ADDRESS']
          : ['localhost:7233', 'the default'];
  const problem = addressProblem(address);
  if (problem !== undefined) throw new CliError(`${source}: ${problem}`, EXIT.usage);
  return address;
}

export function workerContext(configPath: string, flags: ConnectionFlags & { stateDir: string }): WorkerContext {
  const { parsed, runId } = loadConfig(configPath);
  return { parsed, runId, paths: runtimePaths(parsed.config, flags.stateDir), temporal: target(flags, parsed) };
}

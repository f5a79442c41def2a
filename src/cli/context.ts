/**
 * What the run commands share once they run: the config they were given and the Temporal server
 * they talk to. Loaded by the commands that need it, not by `--help` (src/cli/main.ts).
 */
import { loadRunConfigFile, resolveRunId, type ParsedRunConfig } from '../config';
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
    address: flags.address ?? parsed?.config.temporal.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
    namespace: flags.namespace ?? parsed?.config.temporal.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default',
    security: resolveSecurity(parsed?.config.temporal, flags),
  };
}

export function workerContext(configPath: string, flags: ConnectionFlags & { stateDir: string }): WorkerContext {
  const { parsed, runId } = loadConfig(configPath);
  return { parsed, runId, paths: runtimePaths(parsed.config, flags.stateDir), temporal: target(flags, parsed) };
}

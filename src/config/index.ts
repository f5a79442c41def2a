/** The run configuration: schema, loading, validation and errors. */
export {
  DEFAULT_ITERATIONS,
  DEFAULT_TIME_SCALE,
  gpuListSchema,
  parseGpuRanges,
  rolloutEngineSchema,
  RUN_ID_PATTERN,
  runConfigSchema,
  trainerEngineSchema,
} from './schema';
export type { GpuList, RolloutEngineConfig, RunConfig, RunConfigInput, TrainerEngineConfig } from './schema';
export {
  CONFIG_EXTENSIONS,
  ConfigError,
  formatConfigError,
  formatPath,
  loadRunConfigFile,
  parseRunConfig,
  resolveGpuList,
  resolveRunId,
  slugify,
  validationIssue,
} from './load';
export type { ConfigIssue, ParsedRunConfig } from './load';
export { defaultConfigPath, examplesDir } from './paths';

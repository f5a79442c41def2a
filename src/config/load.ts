/**
 * Loading and validating a run configuration: file → YAML/JSON → zod schema → GPU lists resolved
 * against the pool → buildLayout (strategy rules) → checks that need the layout (one endpoint per
 * rollout rank). Every problem becomes a ConfigError listing each issue with its dotted field
 * path (`pool.gpusPerNode`, `train.gpus[2]`), the rule broken and the offending value.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { buildLayout } from '../gpu/layout';
import { MAX_LIVE_SAMPLES } from '../gpu/ledger';
import type { GpuId, PoolLayout } from '../gpu/layout';
import { ValidationError } from '../validation/patterns';
import { RUN_ID_PATTERN, runConfigSchema } from './schema';
import { didYouMean, knownKeysAt } from './suggest';
import type { GpuList, RunConfig } from './schema';

// ---------------------------------------------------------------------------------------------
// ConfigError
// ---------------------------------------------------------------------------------------------

export interface ConfigIssue {
  /** Dotted field path, e.g. `pool.gpusPerNode`, `train.gpus[2]`; '' for the file as a whole. */
  path: string;
  /** The rule broken, with the offending value where known. */
  message: string;
  /** 1-based line in the source file, when known (YAML files). */
  line?: number;
}

export class ConfigError extends Error {
  constructor(
    /** Where the configuration came from (a file path, or e.g. "<inline>"). */
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    super(formatConfigError(source, issues));
    this.name = 'ConfigError';
  }
}

function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? '' : ` [line ${issue.line}]`;
  return issue.path === '' ? `${issue.message}${where}` : `${issue.path}: ${issue.message}${where}`;
}

export function formatConfigError(source: string, issues: readonly ConfigIssue[]): string {
  return [`Invalid run configuration ${source}:`, ...issues.map((issue) => `  - ${formatIssue(issue)}`)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// zod issues → ConfigIssues
// ---------------------------------------------------------------------------------------------

type PathSegment = PropertyKey;

/** `['train', 'gpus', 2]` → `train.gpus[2]`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else {
      const name = String(segment);
      const plain = /^[A-Za-z_$][\w$-]*$/.test(name);
      if (plain) out += out === '' ? name : `.${name}`;
      else out += `[${JSON.stringify(name)}]`;
    }
  }
  return out;
}

function render(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return String(value);
  }
}

function describeType(expected: string): string {
  switch (expected) {
    case 'object':
      return 'an object (a mapping of keys)';
    case 'array':
      return 'an array';
    case 'int':
      return 'an integer';
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    default:
      return expected;
  }
}

/**
 * The per-parse error map: a message naming the rule for every issue whose schema set none
 * (notably the embedded cost model and workload schemas).
 */
const ruleMessage: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${describeType(issue.expected)}`;
    case 'too_small': {
      const op = issue.inclusive === false ? '>' : '>=';
      if (issue.origin === 'array' || issue.origin === 'set') return `expected at least ${String(issue.minimum)} element(s)`;
      if (issue.origin === 'string') return `expected at least ${String(issue.minimum)} character(s)`;
      return `expected a number ${op} ${String(issue.minimum)}`;
    }
    case 'too_big': {
      const op = issue.inclusive === false ? '<' : '<=';
      if (issue.origin === 'array' || issue.origin === 'set') return `expected at most ${String(issue.maximum)} element(s)`;
      if (issue.origin === 'string') return `expected at most ${String(issue.maximum)} character(s)`;
      return `expected a number ${op} ${String(issue.maximum)}`;
    }
    case 'invalid_value':
      return `expected ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map((v) => render(v)).join(' | ')}`;
    case 'invalid_union': {
      const options: unknown = issue.options;
      if (issue.discriminator !== undefined && Array.isArray(options)) {
        return `expected one of ${options.map((v: unknown) => render(v)).join(' | ')}`;
      }
      return 'does not match any allowed form';
    }
    case 'invalid_format':
      if (issue.format === 'regex' && issue.pattern !== undefined) return `expected a string matching ${issue.pattern}`;
      return `expected a valid ${issue.format}`;
    case 'not_multiple_of':
      return `expected a multiple of ${String(issue.divisor)}`;
    case 'unrecognized_keys':
      return 'unknown key';
    default:
      return undefined;
  }
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function zodIssues(error: z.ZodError): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(runConfigSchema, issue.path);
      for (const key of issue.keys) {
        const meant = didYouMean(key, known);
        issues.push({ path: formatPath([...issue.path, key]), message: meant === undefined ? 'unknown key' : `unknown key (did you mean '${meant}'?)` });
      }
      continue;
    }
    const hasInput = 'input' in issue && issue.input !== undefined;
    let got: unknown = hasInput ? issue.input : undefined;
    let missing = issue.code === 'invalid_type' && !hasInput;
    if (issue.code === 'invalid_union' && issue.discriminator !== undefined) {
      // The input is the object; the offending value is its discriminator.
      got = isRecord(issue.input) ? issue.input[issue.discriminator] : undefined;
      missing = got === undefined;
    }
    const message = missing
      ? `required field is missing (${issue.message})`
      : got === undefined
        ? issue.message
        : `${issue.message} (got ${render(got)})`;
    issues.push({ path: formatPath(issue.path), message });
  }
  return issues;
}

// ---------------------------------------------------------------------------------------------
// ValidationError (from buildLayout) → ConfigIssue
// ---------------------------------------------------------------------------------------------

const FIELD_PATH = /^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*)\s*(?:\((.*)\))?$/;

/**
 * buildLayout's subjects are field paths, optionally with the rule in parentheses
 * ("train.gpus (multiplexed: must be a strict subset of rollout.gpus)"), or a description
 * ("rollout rank 3", "pool size (nodes × gpusPerNode)").
 */
export function validationIssue(error: ValidationError): ConfigIssue {
  const detail = error.detail;

  let fieldPath: string;
  let rule: string | undefined;
  let qualifier = false; // "field (rule)" rather than a description such as "rollout rank 3"
  const match = FIELD_PATH.exec(error.subject);
  if (match?.[1] !== undefined) {
    fieldPath = match[1];
    rule = match[2];
    qualifier = true;
  } else if (/^rollout rank \d+$/.test(error.subject)) {
    fieldPath = 'rollout.gpus';
    rule = error.subject;
  } else if (error.subject.startsWith('pool size')) {
    fieldPath = 'pool';
    rule = error.subject;
  } else {
    fieldPath = '';
    rule = error.subject;
  }
  const text = rule === undefined || rule.includes(detail) ? (rule ?? detail) : `${rule}${qualifier ? ';' : ':'} ${detail}`;
  return { path: fieldPath, message: `${text} (got ${error.offending}) [${error.pattern}]` };
}

// ---------------------------------------------------------------------------------------------
// parseRunConfig
// ---------------------------------------------------------------------------------------------

export interface ParsedRunConfig {
  config: RunConfig;
  layout: PoolLayout;
  /** Live samples kept rolling at once: rollout.maxConcurrentSamples or batchSize × (1 + asyncRatio). */
  maxConcurrentSamples: number;
}

/**
 * Resolves a GpuList against a pool of `poolSize` GPUs: sorted ids. Out-of-pool ids are issues:
 * one per index when the file gave an array (`train.gpus[2]`), one for the field when it gave a
 * range string (`asWritten` is the value as written in the file, to tell the two apart).
 */
export function resolveGpuList(
  list: GpuList,
  poolSize: number,
  field: string,
  issues: ConfigIssue[],
  asWritten?: unknown,
): GpuId[] {
  if (list === 'all') return Array.from({ length: poolSize }, (_, i) => i);
  const pool = `the pool's GPUs 0..${poolSize - 1} (pool.nodes × pool.gpusPerNode = ${poolSize})`;
  if (typeof asWritten === 'string') {
    const outside = list.filter((id) => id >= poolSize);
    if (outside.length > 0) {
      const which = outside.length === 1 ? `GPU ${outside[0]} is` : `GPUs ${outside.join(', ')} are`;
      issues.push({ path: field, message: `${which} outside ${pool} (got ${render(asWritten)})` });
    }
  } else {
    list.forEach((id, index) => {
      if (id >= poolSize) issues.push({ path: `${field}[${index}]`, message: `GPU ${id} is outside ${pool} (got ${id})` });
    });
  }
  return [...list].sort((a, b) => a - b);
}

/** The value at `segments` in a raw (unvalidated) object, if there is one. */
function rawAt(raw: unknown, segments: readonly string[]): unknown {
  let value = raw;
  for (const segment of segments) {
    if (!isRecord(value)) return undefined;
    value = value[segment];
  }
  return value;
}

/**
 * Validates a raw configuration object (already parsed from YAML/JSON). `source` names it in
 * errors (the file path). Throws ConfigError listing every issue found.
 */
export function parseRunConfig(raw: unknown, source: string): ParsedRunConfig {
  const parsed = runConfigSchema.safeParse(raw, { reportInput: true, error: ruleMessage });
  if (!parsed.success) throw new ConfigError(source, zodIssues(parsed.error));
  const config = parsed.data;
  const issues: ConfigIssue[] = [];

  // Rules across fields that do not need the layout.
  const poolSize = config.pool.nodes * config.pool.gpusPerNode;
  const rolloutGpus = resolveGpuList(config.rollout.gpus, poolSize, 'rollout.gpus', issues, rawAt(raw, ['rollout', 'gpus']));
  const trainGpus = resolveGpuList(config.train.gpus, poolSize, 'train.gpus', issues, rawAt(raw, ['train', 'gpus']));
  if (config.rollout.gpusPerRank > config.pool.gpusPerNode) {
    issues.push({
      path: 'rollout.gpusPerRank',
      message: `a rank must fit on one node: expected an integer in [1, pool.gpusPerNode = ${config.pool.gpusPerNode}] (got ${config.rollout.gpusPerRank})`,
    });
  } else if (rolloutGpus.length % config.rollout.gpusPerRank !== 0) {
    issues.push({
      path: 'rollout.gpus',
      message: `the number of rollout GPUs must be a multiple of rollout.gpusPerRank = ${config.rollout.gpusPerRank} (got ${rolloutGpus.length} GPUs)`,
    });
  }
  const maxConcurrentSamples = config.rollout.maxConcurrentSamples ?? config.batchSize * (1 + config.asyncRatio);
  if (config.rollout.maxConcurrentSamples === undefined && maxConcurrentSamples > MAX_LIVE_SAMPLES) {
    issues.push({
      path: 'asyncRatio',
      message: `batchSize × (1 + asyncRatio) = ${maxConcurrentSamples} live samples is more than a run can hold (${MAX_LIVE_SAMPLES}); lower asyncRatio or set rollout.maxConcurrentSamples`,
    });
  }
  if (maxConcurrentSamples < config.batchSize) {
    issues.push({
      path: 'rollout.maxConcurrentSamples',
      message: `must be >= batchSize = ${config.batchSize}, or a batch can never fill (got ${maxConcurrentSamples})`,
    });
  }
  const kvCapacity = config.rollout.kvCapacityTokensPerRank;
  if (kvCapacity !== undefined && kvCapacity < config.maxTokens) {
    issues.push({
      path: 'rollout.kvCapacityTokensPerRank',
      message: `must be >= maxTokens = ${config.maxTokens}: a rank must hold one trajectory at its token budget (got ${kvCapacity})`,
    });
  }
  const simulatedKv = config.simulation.costModel.kvCapacityTokensPerRank;
  if (simulatedKv !== undefined && config.simulation.hardware !== undefined) {
    issues.push({
      path: 'simulation.costModel.kvCapacityTokensPerRank',
      message: 'is derived from simulation.hardware when it is set (the roofline); set one of the two',
    });
  } else if (simulatedKv !== undefined && simulatedKv < config.maxTokens) {
    issues.push({
      path: 'simulation.costModel.kvCapacityTokensPerRank',
      message: `must be >= maxTokens = ${config.maxTokens}: a rank must hold one trajectory at its token budget (got ${simulatedKv})`,
    });
  }
  // The layout: mapping of ranks onto nodes, then the strategy rules.
  let layout: PoolLayout | undefined;
  if (issues.length === 0) {
    try {
      layout = buildLayout({
        strategy: config.strategy,
        nodes: config.pool.nodes,
        gpusPerNode: config.pool.gpusPerNode,
        rolloutGpus,
        gpusPerRank: config.rollout.gpusPerRank,
        trainGpus,
        asyncRatio: config.asyncRatio,
      });
    } catch (error) {
      if (error instanceof ValidationError) issues.push(validationIssue(error));
      else throw error;
    }
  }

  // Checks that need the layout.
  if (layout !== undefined && config.engine.rollout.kind !== 'simulated') {
    const endpoints = config.engine.rollout.endpoints.length;
    if (endpoints !== layout.ranks.length) {
      issues.push({
        path: 'engine.rollout.endpoints',
        message: `expected one endpoint per rollout rank: ${layout.ranks.length} ranks (${rolloutGpus.length} rollout GPUs / rollout.gpusPerRank ${config.rollout.gpusPerRank}) (got ${endpoints} endpoints)`,
      });
    }
  }

  // Real engines work on token ids end to end: the rollout engines, the trainer (which loads no
  // simulated weights file) and the environment (which must produce ids) are real together.
  const { rollout, trainer, environment } = config.engine;
  const realRollout = rollout.kind !== 'simulated';
  if (realRollout !== (trainer.kind !== 'simulated')) {
    issues.push({
      path: 'engine.trainer.kind',
      message: `real rollout engines need the http trainer and the simulated trainer needs simulated rollout engines (got rollout ${rollout.kind}, trainer ${trainer.kind})`,
    });
  }
  if (realRollout !== (environment.kind !== 'simulated')) {
    issues.push({
      path: 'engine.environment.kind',
      message: `real rollout engines need an environment with token ids ('digits' or 'openenv') and simulated engines the simulated one (got rollout ${rollout.kind}, environment ${environment.kind})`,
    });
  }
  // Broadcast: the engines reach the trainer's group store at masterAddress, by default the trainer
  // endpoint's host. A loopback trainer host is unreachable for engines on other hosts: the group
  // would never form, and each attempt would wait out weightSync.timeoutSeconds before saying so.
  const { weightSync } = config.engine;
  if (weightSync.mode === 'broadcast' && weightSync.masterAddress === undefined && trainer.kind === 'http' && rollout.kind !== 'simulated') {
    const trainerHost = urlHost(trainer.endpoint);
    const remote = [...new Set(rollout.endpoints.map(urlHost).filter((host) => !isLoopbackHost(host)))];
    if (isLoopbackHost(trainerHost) && remote.length > 0) {
      issues.push({
        path: 'engine.weightSync.masterAddress',
        message: `expected an address of the trainer that the rollout engines reach: the default, the trainer endpoint's host ${trainerHost}, is loopback, but rollout engines run on ${remote.join(', ')}`,
      });
    }
  }
  if (rollout.kind === 'vllm' && rollout.model === undefined) {
    issues.push({ path: 'engine.rollout.model', message: 'expected the served model name: vllm needs it in every completions request' });
  }

  if (issues.length > 0 || layout === undefined) throw new ConfigError(source, issues);
  return { config, layout, maxConcurrentSamples };
}

/** The host of an http(s) URL the schema accepted, without IPv6 brackets. */
function urlHost(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/** Alias uses a YAML config may expand (a config needs a handful; an alias bomb needs millions). */
const MAX_ALIAS_EXPANSIONS = 1000;

export const CONFIG_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

function lineAndColumn(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, col: (lines[lines.length - 1]?.length ?? 0) + 1 };
}

/** The 1-based line of the deepest node of `segments` that exists in the YAML document. */
function yamlLine(contents: YamlNode | null, segments: readonly (string | number)[], lines: LineCounter): number | undefined {
  let node: unknown = contents;
  let offset: number | undefined = isNodeWithRange(contents) ? contents.range[0] : undefined;
  for (const segment of segments) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(segment));
      if (pair === undefined) break;
      if (isNodeWithRange(pair.key)) offset = pair.key.range[0];
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item: unknown = node.items[segment];
      if (!isNodeWithRange(item)) break;
      offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : lines.linePos(offset).line;
}

function isNodeWithRange(value: unknown): value is { range: [number, number, number] } {
  return isRecord(value) && Array.isArray(value.range) && typeof value.range[0] === 'number';
}

/** `train.gpus[2]` → ['train', 'gpus', 2]. */
function parsePath(dotted: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const match of dotted.matchAll(/([^.[\]]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]/g)) {
    if (match[2] !== undefined) out.push(Number(match[2]));
    else if (match[3] !== undefined) out.push(JSON.parse(`"${match[3]}"`) as string);
    else if (match[1] !== undefined) out.push(match[1]);
  }
  return out;
}

/** Reads the file's text and parses it (YAML or JSON by extension); syntax errors are ConfigErrors. */
function readConfigFile(file: string): { raw: unknown; lineOf?: (fieldPath: string) => number | undefined } {
  const ext = path.extname(file).toLowerCase();
  if (!(CONFIG_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new ConfigError(file, [
      { path: '', message: `unsupported file extension ${JSON.stringify(ext)}: expected one of ${CONFIG_EXTENSIONS.join(', ')}` },
    ]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = isRecord(error) && typeof error.code === 'string' ? error.code : undefined;
    const message =
      code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory, not a file' : `cannot read file: ${String(error)}`;
    throw new ConfigError(file, [{ path: '', message }]);
  }

  if (ext === '.json') {
    try {
      return { raw: JSON.parse(text) as unknown };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const position = /position (\d+)/.exec(message);
      const at = position?.[1] === undefined ? undefined : lineAndColumn(text, Number(position[1]));
      throw new ConfigError(file, [
        {
          path: '',
          message: `JSON syntax error${at === undefined ? '' : ` at line ${at.line}, column ${at.col}`}: ${message}`,
          ...(at === undefined ? {} : { line: at.line }),
        },
      ]);
    }
  }

  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((error) => {
        const line = error.linePos?.[0].line;
        const firstLine = error.message.split('\n')[0] ?? error.message;
        const located = firstLine.includes(' at line ') || line === undefined ? firstLine : `${firstLine} at line ${line}`;
        return { path: '', message: `YAML syntax error: ${located.replace(/:$/, '')}`, ...(line === undefined ? {} : { line }) };
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS });
  } catch (error) {
    // The yaml library refuses a document whose aliases expand without bound (a "billion laughs").
    const message = error instanceof Error ? error.message : String(error);
    throw new ConfigError(file, [{ path: '', message: `YAML aliases expand too much (more than ${MAX_ALIAS_EXPANSIONS} alias uses): ${message}` }]);
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError(file, [
      { path: '', message: 'the file is empty: expected a mapping with at least pool, strategy, train and batchSize' },
    ]);
  }
  return { raw, lineOf: (fieldPath) => yamlLine(doc.contents, parsePath(fieldPath), lines) };
}

/**
 * Loads and validates a configuration file (.yaml, .yml or .json). Throws ConfigError for a
 * missing file, a bad extension, a syntax error (with its line) or any invalid field (with its
 * line for YAML files).
 */
export function loadRunConfigFile(file: string): ParsedRunConfig {
  const { raw, lineOf } = readConfigFile(file);
  try {
    return parseRunConfig(raw, file);
  } catch (error) {
    if (error instanceof ConfigError && lineOf !== undefined) {
      throw new ConfigError(
        error.source,
        error.issues.map((issue) => {
          const line = issue.path === '' ? undefined : lineOf(issue.path);
          return line === undefined ? issue : { ...issue, line };
        }),
      );
    }
    throw error;
  }
}

/** A slug usable as a run id: lower-case [a-z0-9-], starting with [a-z0-9], at most 63 characters. */
export function slugify(text: string): string {
  const slug = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return slug === '' ? 'run' : slug;
}

/**
 * The run id: `run.id` from the config, else the config file's base name if it is a valid run id.
 * A name that is not (upper case, spaces…) is refused rather than changed, so the id a person
 * types later is the one they see.
 */
export function resolveRunId(config: RunConfig, configPath: string): string {
  if (config.run.id !== undefined) return config.run.id;
  const name = path.basename(configPath, path.extname(configPath));
  if (RUN_ID_PATTERN.test(name)) return name;
  throw new ConfigError(configPath, [
    {
      path: 'run.id',
      message: `not set, and the file name '${name}' is not a run id (lower-case letters, digits and dashes, at most 63, ${RUN_ID_PATTERN.source}); set run.id, e.g. 'run: { id: ${slugify(name)} }'`,
    },
  ]);
}

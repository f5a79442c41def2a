/**
 * The simulated agent workload: how many turns a trajectory has, how many tokens each turn
 * generates and observes, how long each environment step takes, and whether it succeeds.
 *
 * Every quantity is a pure function of (seed, sampleId, turn) through `uniform01`, so the
 * rollout engine (on whichever rank) and the environment (in whichever process) agree on a
 * sample without sharing state.
 */
import fs from 'node:fs';
import path from 'node:path';
import { checkIntRange, checkNonEmpty } from '../../validation/patterns';
import type { Workload } from '../types';
import { CsvFormatError, parseCsvTable } from './csv';
import { logNormalQuantile, uniformStream, Z90 } from './random';

/** Draw streams: one name per quantity, so adding a quantity never shifts the others. */
const STREAM = {
  turns: 'turns',
  completion: 'completion-tokens',
  observation: 'observation-tokens',
  envStep: 'env-step-ms',
  reward: 'reward',
} as const;

/** The largest turn count a workload CSV may state (a sanity bound, not a cap). */
const MAX_CSV_TURNS = 1_000_000;

export interface WorkloadLimits {
  /** Trajectories end after at most this many turns. */
  maxTurns: number;
  /** Token budget of a trajectory; also caps what a single turn may generate. */
  maxTokens: number;
}

/** One trajectory of a workload CSV: its turns and, when the CSV has them, its per-turn means. */
export interface WorkloadCsvRow {
  turns: number;
  /** Mean completion tokens per turn (column completion_tokens_per_turn, or gen_tokens_total / turns). */
  completionTokensPerTurn?: number;
  /** Mean tool (environment step) time per turn in seconds (column tool_seconds_per_turn). */
  toolSecondsPerTurn?: number;
}

export interface WorkloadCsv {
  file: string;
  rows: WorkloadCsvRow[];
  /** Columns the workload uses, and those it does not (reported, never silently dropped). */
  usedColumns: string[];
  ignoredColumns: string[];
}

/** Columns a per-trajectory workload CSV may carry besides `turns`. */
export const WORKLOAD_CSV_COLUMNS = ['turns', 'completion_tokens_per_turn', 'gen_tokens_total', 'tool_seconds_per_turn'] as const;

function readCsvText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read workload CSV ${file}: ${(err as Error).message}`);
  }
}

/**
 * Reads a per-trajectory CSV (such as data/swebv_mini_gemini3pro.csv): the `turns` column,
 * and optionally `completion_tokens_per_turn` (or `gen_tokens_total`) and `tool_seconds_per_turn`.
 * Throws CsvFormatError / ValidationError naming the file and line of the first bad value.
 */
export function loadWorkloadCsv(file: string): WorkloadCsv {
  const table = parseCsvTable(readCsvText(file), file);
  const column = (name: string): number => table.header.indexOf(name);
  if (column('turns') < 0) {
    throw new CsvFormatError(file, 1, `no "turns" column in the header (columns: ${table.header.join(', ')})`);
  }
  const number = (row: { line: number; fields: string[] }, name: string, integer: boolean): number | undefined => {
    const index = column(name);
    if (index < 0) return undefined;
    const raw = (row.fields[index] ?? '').trim();
    const value = Number(raw);
    if (raw === '' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
      throw new CsvFormatError(file, row.line, `column "${name}" must be a non-negative ${integer ? 'integer' : 'number'}, got ${JSON.stringify(raw)}`);
    }
    return value;
  };
  const rows = table.rows.map((row): WorkloadCsvRow => {
    const rawTurns = (row.fields[column('turns')] ?? '').trim();
    if (!/^\d+$/.test(rawTurns)) {
      throw new CsvFormatError(file, row.line, `column "turns" must be a positive integer, got ${JSON.stringify(rawTurns)}`);
    }
    const turns = checkIntRange(`${file}:${row.line} column "turns"`, Number(rawTurns), 1, MAX_CSV_TURNS);
    const perTurn = number(row, 'completion_tokens_per_turn', false);
    const total = number(row, 'gen_tokens_total', true);
    const completion = perTurn ?? (total === undefined ? undefined : total / turns);
    const tool = number(row, 'tool_seconds_per_turn', false);
    return {
      turns,
      ...(completion === undefined ? {} : { completionTokensPerTurn: Math.max(1, completion) }),
      ...(tool === undefined ? {} : { toolSecondsPerTurn: tool }),
    };
  });
  checkNonEmpty(`data rows of workload CSV ${file}`, rows);
  const known = new Set<string>(WORKLOAD_CSV_COLUMNS);
  // gen_tokens_total is not used when completion_tokens_per_turn is there.
  const shadowed = column('completion_tokens_per_turn') >= 0 ? 'gen_tokens_total' : undefined;
  const usedColumns = table.header.filter((name) => known.has(name) && name !== shadowed);
  return { file, rows, usedColumns, ignoredColumns: table.header.filter((name) => !usedColumns.includes(name)) };
}

/** The `turns` column of a per-trajectory CSV (see loadWorkloadCsv). */
export function loadTurnsCsv(file: string): number[] {
  return loadWorkloadCsv(file).rows.map((row) => row.turns);
}

/** Mean of the log-normal with this median and p90. */
function logNormalMean(spec: { median: number; p90: number }): number {
  const sigma = Math.log(spec.p90 / spec.median) / Z90;
  return spec.median * Math.exp((sigma * sigma) / 2);
}

export class WorkloadModel {
  readonly maxTurns: number;
  readonly maxTokens: number;
  /** Empirical trajectories when turnDistribution is 'csv'; undefined for 'lognormal'. */
  private readonly csvRows: readonly WorkloadCsvRow[] | undefined;

  /**
   * `csv` (turn counts, or the rows of loadWorkloadCsv) must be given when
   * params.turnDistribution is 'csv'; use `WorkloadModel.fromParams` to have the file read for you.
   * Rows with per-turn means scale that trajectory's draws (the configured distribution's shape,
   * the row's mean).
   */
  constructor(
    readonly params: Workload,
    limits: WorkloadLimits,
    csv?: readonly number[] | readonly WorkloadCsvRow[],
  ) {
    this.maxTurns = checkIntRange('workload maxTurns', limits.maxTurns, 1, Number.MAX_SAFE_INTEGER);
    this.maxTokens = checkIntRange('workload maxTokens', limits.maxTokens, 1, Number.MAX_SAFE_INTEGER);
    checkIntRange('workload seed', params.seed, 0, Number.MAX_SAFE_INTEGER);
    if (params.turnDistribution === 'csv') {
      if (csv === undefined) {
        throw new Error("WorkloadModel: turnDistribution is 'csv' but no CSV turn counts were given (use WorkloadModel.fromParams)");
      }
      const rows = (csv as readonly (number | WorkloadCsvRow)[]).map((row): WorkloadCsvRow => (typeof row === 'number' ? { turns: row } : row));
      checkNonEmpty('workload CSV turn counts', rows);
      rows.forEach((row, i) => checkIntRange(`workload CSV turn count #${i}`, row.turns, 1, MAX_CSV_TURNS));
      this.csvRows = rows;
    } else {
      this.csvRows = undefined;
    }
    this.completionMean = logNormalMean(params.completionTokensPerTurn);
    this.envStepMean = logNormalMean(params.envStepMs);
    this.draw = {
      turns: uniformStream(params.seed, STREAM.turns),
      completion: uniformStream(params.seed, STREAM.completion),
      observation: uniformStream(params.seed, STREAM.observation),
      envStep: uniformStream(params.seed, STREAM.envStep),
      reward: uniformStream(params.seed, STREAM.reward),
    };
    this.quantile = {
      turns: logNormalQuantile(params.turns),
      completion: logNormalQuantile(params.completionTokensPerTurn),
      observation: logNormalQuantile(params.observationTokensPerTurn),
      envStep: logNormalQuantile(params.envStepMs),
    };
  }

  /**
   * Builds the model, reading params.csvPath when the distribution is 'csv'. A relative csvPath
   * is resolved against `baseDir` (default: the process's working directory); callers that load
   * a config file should pass the directory the path is relative to.
   */
  static fromParams(params: Workload, limits: WorkloadLimits, options: { baseDir?: string } = {}): WorkloadModel {
    if (params.turnDistribution !== 'csv') return new WorkloadModel(params, limits);
    if (params.csvPath === undefined) throw new Error("WorkloadModel: turnDistribution is 'csv' but csvPath is not set");
    const file = path.resolve(options.baseDir ?? process.cwd(), params.csvPath);
    return new WorkloadModel(params, limits, loadWorkloadCsv(file).rows);
  }

  private readonly completionMean: number;
  private readonly envStepMean: number;
  /** The uniform draws of each stream (uniform01 with the seed and stream fixed). */
  private readonly draw: Record<keyof typeof STREAM, (sampleId: number, turn?: number) => number>;
  /** The configured log-normals, as functions of the quantile. */
  private readonly quantile: Record<'turns' | 'completion' | 'observation' | 'envStep', (u: number) => number>;

  /** The CSV trajectory a sample replays (the same draw as its turn count), if any. */
  private csvRow(sampleId: number): WorkloadCsvRow | undefined {
    const rows = this.csvRows;
    if (rows === undefined) return undefined;
    const u = this.draw.turns(sampleId);
    return rows[Math.min(rows.length - 1, Math.floor(u * rows.length))];
  }

  /** Turns the sample's trajectory would have without the maxTurns limit (>= 1). */
  drawnTurns(sampleId: number): number {
    // Empirical draw: the same u picks one of the CSV's trajectories uniformly.
    const drawn = this.csvRows === undefined ? Math.round(this.quantile.turns(this.draw.turns(sampleId))) : (this.csvRow(sampleId)?.turns ?? 1);
    return Math.max(1, drawn);
  }

  /** Number of turns of the sample's trajectory, in [1, maxTurns] (drawnTurns cut at the limit). */
  turnsFor(sampleId: number): number {
    return Math.min(this.maxTurns, this.drawnTurns(sampleId));
  }

  /** Tokens the model generates in this turn, in [1, maxTokens]. */
  completionTokens(sampleId: number, turn: number): number {
    const draw = this.quantile.completion(this.draw.completion(sampleId, turn));
    const mean = this.csvRows === undefined ? undefined : this.csvRow(sampleId)?.completionTokensPerTurn;
    const drawn = Math.round(mean === undefined ? draw : (draw * mean) / this.completionMean);
    return Math.min(this.maxTokens, Math.max(1, drawn));
  }

  /**
   * What one generate call of this turn decodes when `prefixTokens` of it were generated before (a
   * resumed turn) and the call may decode at most `maxNewTokens`; `capped` when that limit cut it.
   * The one rule of the simulated engines and the simulator.
   */
  turnTarget(sampleId: number, turn: number, prefixTokens: number, maxNewTokens: number): { tokens: number; capped: boolean } {
    const wanted = Math.max(0, this.completionTokens(sampleId, turn) - prefixTokens);
    return wanted > maxNewTokens ? { tokens: maxNewTokens, capped: true } : { tokens: wanted, capped: false };
  }

  /** Tokens the environment's observation after this turn adds to the context (>= 0). */
  observationTokens(sampleId: number, turn: number): number {
    return Math.max(0, Math.round(this.quantile.observation(this.draw.observation(sampleId, turn))));
  }

  /** Simulated latency of the environment step after this turn (ms). */
  envStepMs(sampleId: number, turn: number): number {
    const draw = this.quantile.envStep(this.draw.envStep(sampleId, turn));
    const seconds = this.csvRows === undefined ? undefined : this.csvRow(sampleId)?.toolSecondsPerTurn;
    return seconds === undefined ? draw : (draw * seconds * 1000) / this.envStepMean;
  }

  /** Reward of the finished trajectory: 1 with probability successRate, else 0. */
  reward(sampleId: number): number {
    return this.draw.reward(sampleId) < this.params.successRate ? 1 : 0;
  }

  /** Prompt length at reset (tokens). Constant today; takes the id so it may vary per sample later. */
  promptTokens(_sampleId: number): number {
    return this.params.promptTokens;
  }
}

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
import { checkIntRange, checkNonEmpty } from '../../gpu/validation';
import type { Workload } from '../types';
import { CsvFormatError, parseCsvTable } from './csv';
import { logNormal, uniform01 } from './random';

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

/**
 * Reads the `turns` column of a per-trajectory CSV (such as shared/data/swebv_mini_gemini3pro.csv).
 * Throws CsvFormatError / ValidationError naming the file and line of the first bad row.
 */
export function loadTurnsCsv(file: string): number[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read workload CSV ${file}: ${(err as Error).message}`);
  }
  const table = parseCsvTable(text, file);
  const column = table.header.indexOf('turns');
  if (column < 0) {
    throw new CsvFormatError(file, 1, `no "turns" column in the header (columns: ${table.header.join(', ')})`);
  }
  const turns = table.rows.map((row) => {
    const raw = (row.fields[column] ?? '').trim();
    if (!/^\d+$/.test(raw)) {
      throw new CsvFormatError(file, row.line, `column "turns" must be a positive integer, got ${JSON.stringify(raw)}`);
    }
    return checkIntRange(`${file}:${row.line} column "turns"`, Number(raw), 1, MAX_CSV_TURNS);
  });
  checkNonEmpty(`data rows of workload CSV ${file}`, turns);
  return turns;
}

export class WorkloadModel {
  readonly maxTurns: number;
  readonly maxTokens: number;
  /** Empirical turn counts when turnDistribution is 'csv'; undefined for 'lognormal'. */
  private readonly csvTurns: readonly number[] | undefined;

  /**
   * `csvTurns` must be given (e.g. from loadTurnsCsv) when params.turnDistribution is 'csv';
   * use `WorkloadModel.fromParams` to have the file read for you.
   */
  constructor(
    readonly params: Workload,
    limits: WorkloadLimits,
    csvTurns?: readonly number[],
  ) {
    this.maxTurns = checkIntRange('workload maxTurns', limits.maxTurns, 1, Number.MAX_SAFE_INTEGER);
    this.maxTokens = checkIntRange('workload maxTokens', limits.maxTokens, 1, Number.MAX_SAFE_INTEGER);
    checkIntRange('workload seed', params.seed, 0, Number.MAX_SAFE_INTEGER);
    if (params.turnDistribution === 'csv') {
      if (csvTurns === undefined) {
        throw new Error("WorkloadModel: turnDistribution is 'csv' but no CSV turn counts were given (use WorkloadModel.fromParams)");
      }
      checkNonEmpty('workload CSV turn counts', csvTurns);
      csvTurns.forEach((t, i) => checkIntRange(`workload CSV turn count #${i}`, t, 1, MAX_CSV_TURNS));
      this.csvTurns = [...csvTurns];
    } else {
      this.csvTurns = undefined;
    }
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
    return new WorkloadModel(params, limits, loadTurnsCsv(file));
  }

  private u(stream: string, sampleId: number, turn = 0): number {
    return uniform01(this.params.seed, stream, sampleId, turn);
  }

  /** Turns the sample's trajectory would have without the maxTurns limit (>= 1). */
  drawnTurns(sampleId: number): number {
    const u = this.u(STREAM.turns, sampleId);
    const drawn =
      this.csvTurns === undefined
        ? Math.round(logNormal(this.params.turns, u))
        : // Empirical draw: u in (0,1) picks one of the CSV's trajectories uniformly.
          (this.csvTurns[Math.min(this.csvTurns.length - 1, Math.floor(u * this.csvTurns.length))] ?? 1);
    return Math.max(1, drawn);
  }

  /** Number of turns of the sample's trajectory, in [1, maxTurns] (drawnTurns cut at the limit). */
  turnsFor(sampleId: number): number {
    return Math.min(this.maxTurns, this.drawnTurns(sampleId));
  }

  /** Tokens the model generates in this turn, in [1, maxTokens]. */
  completionTokens(sampleId: number, turn: number): number {
    const drawn = Math.round(logNormal(this.params.completionTokensPerTurn, this.u(STREAM.completion, sampleId, turn)));
    return Math.min(this.maxTokens, Math.max(1, drawn));
  }

  /** Tokens the environment's observation after this turn adds to the context (>= 0). */
  observationTokens(sampleId: number, turn: number): number {
    return Math.max(0, Math.round(logNormal(this.params.observationTokensPerTurn, this.u(STREAM.observation, sampleId, turn))));
  }

  /** Simulated latency of the environment step after this turn (ms). */
  envStepMs(sampleId: number, turn: number): number {
    return logNormal(this.params.envStepMs, this.u(STREAM.envStep, sampleId, turn));
  }

  /** Reward of the finished trajectory: 1 with probability successRate, else 0. */
  reward(sampleId: number): number {
    return this.u(STREAM.reward, sampleId) < this.params.successRate ? 1 : 0;
  }

  /** Prompt length at reset (tokens). Constant today; takes the id so it may vary per sample later. */
  promptTokens(_sampleId: number): number {
    return this.params.promptTokens;
  }
}

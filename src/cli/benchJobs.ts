/**
 * The bench's simulations as independent jobs (a strategy, a static split candidate, a policy
 * variant, a sweep point), described by plain data so that they can run in worker threads
 * (benchWorker.ts) side by side. A job's figures do not depend on where or beside what it runs:
 * each simulation is deterministic and shares no state with the others.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadWorkloadCsv, WorkloadModel } from '../engines/simulated/workload';
import type { SchedulingPolicy, StalenessPolicy, Strategy } from '../gpu';
import { simulationConfig } from '../simulator/config';
import { asStrategy, shapedWorkload, type WorkloadShape } from '../simulator/presets';
import { strategyReport, type StrategyReport } from '../simulator/report';
import { simulate, type IterationRecord } from '../simulator/simulator';
import type { Timeline } from '../timeline/types';

export interface BenchJob {
  /** The config file `raw` comes from (messages; a relative workload csvPath resolves against its directory). */
  file: string;
  raw: Record<string, unknown>;
  strategy: Strategy;
  iterations: number;
  timelineIterations?: number;
  /** Turns per trajectory from this workload CSV (bench --workload-csv). */
  csv?: string;
  /** The workload shape of a sweep point (replaces the config's turn distribution). */
  shape?: WorkloadShape;
  policy?: SchedulingPolicy;
  staleness?: StalenessPolicy;
  /** Also return the timeline and the iteration records (the strategies' runs). */
  full?: boolean;
}

export interface BenchJobResult {
  report: StrategyReport;
  timeline?: Timeline;
  iterations?: IterationRecord[];
  /** Wall seconds the simulation took where it ran. */
  wallSeconds: number;
}

export function runBenchJob(job: BenchJob): BenchJobResult {
  const started = Date.now();
  const parsed = asStrategy(job.raw, job.strategy, job.file);
  const workload =
    job.shape !== undefined
      ? shapedWorkload(parsed, job.shape)
      : job.csv !== undefined
        ? new WorkloadModel(
            { ...parsed.config.simulation.workload, turnDistribution: 'csv', csvPath: job.csv },
            { maxTurns: parsed.config.maxTurns, maxTokens: parsed.config.maxTokens },
            loadWorkloadCsv(job.csv).rows,
          )
        : undefined;
  const result = simulate(
    simulationConfig(parsed, {
      iterations: job.iterations,
      ...(job.timelineIterations === undefined ? {} : { timelineIterations: job.timelineIterations }),
      ...(job.policy === undefined ? {} : { policy: job.policy }),
      ...(job.staleness === undefined ? {} : { staleness: job.staleness }),
      baseDir: path.dirname(job.file),
      workload,
    }),
  );
  return {
    report: strategyReport(result),
    ...(job.full === true ? { timeline: result.timeline, iterations: result.iterations } : {}),
    wallSeconds: (Date.now() - started) / 1000,
  };
}

/** The compiled worker entry (absent when the CLI runs from TypeScript sources, e.g. under tsx). */
function workerFile(): string | undefined {
  return __filename.endsWith('.js') ? path.join(__dirname, 'benchWorker.js') : undefined;
}

interface QueuedJob {
  job: BenchJob;
  resolve: (result: BenchJobResult) => void;
  reject: (error: Error) => void;
}

/**
 * Runs bench jobs on up to `threads` worker threads, each job as soon as a thread is free, in the
 * order submitted (in this thread, one after another, when `threads` is 1 or there is no compiled
 * worker). Jobs may be submitted while others run: the split search submits its probes as earlier
 * ones finish. Submit the longest first. A failed job rejects its own promise with the job named; a
 * worker thread that dies fails its job and every job still queued.
 */
export class BenchPool {
  private readonly file: string | undefined;
  private readonly size: number;
  private readonly queue: QueuedJob[] = [];
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, QueuedJob>();
  private inThread: Promise<unknown> = Promise.resolve();
  private failure: Error | undefined;
  private closed = false;
  /** The most threads that ran jobs at once (1 when the jobs run in this thread). */
  threadsUsed = 0;

  constructor(threads: number) {
    this.file = workerFile();
    this.size = this.file === undefined ? 1 : Math.max(1, threads);
  }

  run(job: BenchJob): Promise<BenchJobResult> {
    if (this.closed) return Promise.reject(jobError(job, new Error('not run: the bench pool is closed')));
    if (this.size <= 1) {
      this.threadsUsed = 1;
      const result = this.inThread.then(() => {
        if (this.closed) throw jobError(job, new Error('not run: the bench pool closed first'));
        try {
          return runBenchJob(job);
        } catch (error) {
          throw jobError(job, error instanceof Error ? error : new Error(String(error)));
        }
      });
      this.inThread = result.catch(() => undefined);
      return result;
    }
    return new Promise((resolve, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      this.queue.push({ job, resolve, reject });
      this.dispatch();
    });
  }

  /** Ends the worker threads; call when every submitted job has settled. */
  async close(): Promise<void> {
    this.closed = true;
    const workers = [...this.idle, ...this.busy.keys()];
    this.idle.length = 0;
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? (this.busy.size < this.size ? this.startWorker() : undefined);
      if (worker === undefined) return;
      const queued = this.queue.shift()!;
      this.busy.set(worker, queued);
      this.threadsUsed = Math.max(this.threadsUsed, this.busy.size);
      worker.postMessage(queued.job);
    }
  }

  private startWorker(): Worker {
    const worker = new Worker(this.file!);
    worker.on('message', (message: { result?: BenchJobResult; error?: string; stack?: string }) => {
      const queued = this.busy.get(worker)!;
      this.busy.delete(worker);
      this.idle.push(worker);
      if (message.error !== undefined) {
        const error = new Error(message.error);
        if (message.stack !== undefined) error.stack = message.stack;
        queued.reject(jobError(queued.job, error));
      } else {
        queued.resolve(message.result!);
      }
      this.dispatch();
    });
    const died = (error: Error): void => {
      const queued = this.busy.get(worker);
      this.busy.delete(worker);
      this.failure ??= error;
      if (queued !== undefined) queued.reject(jobError(queued.job, error));
      for (const waiting of this.queue.splice(0)) waiting.reject(jobError(waiting.job, new Error(`not run: a bench worker thread died (${error.message})`)));
    };
    worker.on('error', died);
    worker.on('exit', (code) => {
      if (this.busy.has(worker)) died(new Error(`worker thread exited with code ${code}`));
    });
    return worker;
  }
}

/** Runs the jobs on a pool of `threads` threads; returns the results in the jobs' order. */
export async function runBenchJobs(jobs: readonly BenchJob[], threads: number): Promise<BenchJobResult[]> {
  const pool = new BenchPool(threads);
  try {
    return await Promise.all(jobs.map((job) => pool.run(job)));
  } finally {
    await pool.close();
  }
}

function jobError(job: BenchJob, error: Error): Error {
  return new Error(`bench job ${describeJob(job)}: ${error.message}`, { cause: error });
}

function describeJob(job: BenchJob): string {
  return `${job.strategy} of ${job.file}${job.shape === undefined ? '' : `, ${job.shape} workload`}, ${job.iterations} iterations`;
}

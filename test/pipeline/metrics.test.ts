/**
 * The workers' Prometheus endpoint, through the real pipeline (a real dev server, the real workers
 * in this process, simulated engines): after a run, `GET /metrics` serves the Temporal SDK's
 * metrics and timeshare's, and timeshare's agree with the run's own account (its summary, the
 * store): iterations, samples admitted and trained, weight version, phases, and per rank the
 * turns and sample ends the shards counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/process/ports';
import { installWorkerRuntime } from '../../src/workers/telemetry';
import type { RunSummary } from '../../src/workflows/run';
import { smallConfig, startPipelineEnv, type PipelineEnv } from '../helpers/pipeline';

const RUN_ID = 'metrics-run';
const ITERATIONS = 2;
const BATCH = 8;
const RANKS = 4;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (names, labels, values; comments skipped). */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[label[1]!] = label[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

describe("the workers' Prometheus metrics (real Temporal)", () => {
  let env: PipelineEnv;
  let metricsUrl: string;
  beforeAll(async () => {
    const address = `127.0.0.1:${await freePort()}`;
    // Before the pipeline's own install: the first install of a process decides its runtime.
    installWorkerRuntime({ logLevel: 'WARN', metricsAddress: address });
    metricsUrl = `http://${address}/metrics`;
    env = await startPipelineEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('serve the SDK’s metrics and the run’s figures, equal to its summary and its store', async () => {
    const context = env.context(smallConfig({ run: { id: RUN_ID, iterations: ITERATIONS }, batchSize: BATCH }));
    const workers = await env.startWorkers(context);
    let summary: RunSummary;
    let exposition: string;
    try {
      const { handle } = await env.startRun(context);
      summary = (await handle.result()) as RunSummary;
      // Scraped while the workers run: the runtime (and its endpoint) ends with its last worker.
      const response = await fetch(metricsUrl);
      expect(response.status).toBe(200);
      exposition = await response.text();
    } finally {
      await workers.stop();
    }
    expect(summary.iterations).toBe(ITERATIONS);
    const samples = parseExposition(exposition);
    const ofRun = (name: string, labels: Record<string, string> = {}) =>
      samples.filter((s) => s.name === name && s.labels.run_id === RUN_ID && Object.entries(labels).every(([key, value]) => s.labels[key] === value));
    const sum = (name: string, labels: Record<string, string> = {}) => ofRun(name, labels).reduce((total, s) => total + s.value, 0);

    // The run's figures, recorded by the run workflow as each iteration completed.
    expect(sum('timeshare_iterations_completed_total')).toBe(ITERATIONS);
    expect(sum('timeshare_samples_trained_total')).toBe(ITERATIONS * BATCH);
    expect(sum('timeshare_samples_trained_total')).toBe(summary.samples.trained);
    expect(sum('timeshare_samples_admitted_total')).toBe(summary.samples.admitted);
    expect(sum('timeshare_weight_version')).toBe(summary.version);
    expect(sum('timeshare_iteration_duration_seconds_count')).toBe(ITERATIONS);
    expect(sum('timeshare_phase_duration_seconds_count', { phase: 'train' })).toBe(ITERATIONS);
    expect(sum('timeshare_phase_duration_seconds_count', { phase: 'shrink' })).toBe(ITERATIONS);
    expect(ofRun('timeshare_iterations_completed_total')[0]?.labels.strategy).toBe('multiplexed');
    // timeshare's duration buckets, not the exporter's defaults: up to an hour.
    expect(ofRun('timeshare_iteration_duration_seconds_bucket').map((s) => s.labels.le)).toEqual(['0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '120', '300', '600', '1800', '3600', '+Inf']);

    // The rollout's, counted by the shards of each rank as the work happened: equal to the store.
    const store = env.store(context);
    const records = await store.readSamples(Array.from({ length: summary.samples.admitted }, (_, id) => id));
    const turns = records.reduce((total, record) => total + record.turns.length, 0);
    const completed = records.filter((record) => record.status === 'completed').length;
    expect(sum('timeshare_rollout_turns_total')).toBe(turns);
    expect(sum('timeshare_rollout_sample_ends_total', { outcome: 'completed' })).toBe(completed);
    const ranksCounted = new Set(ofRun('timeshare_rollout_decoded_tokens_total').filter((s) => s.value > 0).map((s) => s.labels.rank));
    expect([...ranksCounted].sort()).toEqual(Array.from({ length: RANKS }, (_, rank) => String(rank)));

    // The SDK's own: the train steps' execution latency, by activity type.
    const trainSteps = samples.filter((s) => s.name.startsWith('temporal_activity_execution_latency') && s.name.endsWith('_count') && s.labels.activity_type === 'trainStep');
    expect(trainSteps.reduce((total, s) => total + s.value, 0)).toBe(ITERATIONS);
  }, 300_000);
});

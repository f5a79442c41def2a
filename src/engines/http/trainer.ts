/**
 * Trainer over the HTTP trainer protocol (docs/trainer-openapi.yaml), served by the reference
 * engine (engines/reference) or any service that implements it.
 */
import { z } from 'zod';
import type { TrainBatch, Trainer, TrainerStatus, TrainStepResult } from '../types';
import { HttpWeightSender } from './broadcast';
import { HttpClient } from './client';
import { EngineProtocolError } from './errors';

const statusSchema = z.object({ onloaded: z.boolean(), weight_version: z.number().int().nonnegative() }).loose();
const stepSchema = z.object({ new_version: z.number().int().positive(), loss: z.number(), trained_samples: z.number().int().nonnegative() }).loose();
const exportSchema = z.object({ path: z.string().min(1) });

export interface HttpTrainerOptions {
  baseUrl: string;
  apiKey?: string;
  /** A train step on a big batch can take long; the default control timeout does not apply. */
  trainStepTimeoutMs?: number;
}

export class HttpTrainer implements Trainer {
  private readonly http: HttpClient;
  private readonly trainStepTimeoutMs: number;

  constructor(options: HttpTrainerOptions) {
    this.http = new HttpClient({ baseUrl: options.baseUrl, ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }) });
    this.trainStepTimeoutMs = options.trainStepTimeoutMs ?? 3_600_000;
    this.broadcast = new HttpWeightSender(this.http);
  }

  readonly broadcast: HttpWeightSender;

  async onload(): Promise<void> {
    await this.http.json('POST', '/trainer/onload', {}, statusSchema);
  }

  async offload(): Promise<void> {
    await this.http.json('POST', '/trainer/offload', {}, statusSchema);
  }

  async trainStep(batch: TrainBatch, signal?: AbortSignal): Promise<TrainStepResult> {
    const endpoint = this.http.endpoint('POST', '/trainer/train_step');
    if (batch.trajectories === undefined) {
      throw new EngineProtocolError(endpoint, `batch of iteration ${batch.iteration} has no trajectories with token ids: the HTTP trainer needs them`);
    }
    const body = await this.http.json(
      'POST',
      '/trainer/train_step',
      {
        iteration: batch.iteration,
        from_version: batch.fromVersion,
        trajectories: batch.trajectories.map((t) => ({
          sample_id: t.sampleId,
          reward: t.reward,
          input_ids: t.inputIds,
          loss_mask: t.lossMask,
          logprobs: t.logprobs,
          ...(t.versions === undefined ? {} : { versions: t.versions }),
        })),
      },
      stepSchema,
      { ...(signal === undefined ? {} : { signal }), timeoutMs: this.trainStepTimeoutMs },
    );
    return { newVersion: body.new_version, loss: body.loss, trainedSamples: body.trained_samples };
  }

  async exportWeights(version: number, dir: string): Promise<{ path: string }> {
    return this.http.json('POST', '/trainer/export_weights', { version, dir }, exportSchema);
  }

  async status(): Promise<TrainerStatus> {
    const body = await this.http.json('GET', '/trainer/status', undefined, statusSchema);
    return { onloaded: body.onloaded, weightVersion: body.weight_version };
  }
}

/**
 * Weight sync by broadcast for the simulated engines. The collective is modelled through files in
 * a folder shared by the run's simulated engines (`<engine state>/broadcast/<group>/`): the
 * trainer opens a group (`open`), takes `weightBroadcastMs` to send a version and then marks it
 * sent (`v<N>.sent`); an engine joins (`weightGroupSetupMs`, its membership persisted with its
 * state, as an engine process outliving its worker would keep it) and its receive completes only
 * once the trainer has sent that version into the group it joined. An engine that is not in the
 * group (it restarted, or joined another) fails its receive: the pipeline then rebuilds the group.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { BroadcastResult, CostModel, TensorLayout, WeightGroup, WeightGroupSpec, WeightManifest, WeightReceiver, WeightSender } from '../types';
import type { SimClock } from './clock';
import { weightBroadcastMs } from './costFunctions';
import { EngineStateError } from './errors';

const groupDir = (dir: string, name: string): string => path.join(dir, name.replace(/[^A-Za-z0-9._-]/g, '_'));
const sentFile = (dir: string, name: string, version: number): string => path.join(groupDir(dir, name), `v${version}.sent`);
/** How often a receiver looks for the sender's mark (simulated ms). */
const POLL_SIM_MS = 50;

export interface SimWeightSenderOptions {
  name: string;
  dir: string;
  clock: SimClock;
  cost: CostModel;
  /** GPUs per rollout rank: the bytes sent are one rank's weights. */
  gpusPerRank: number;
  /** The trainer's current version (only it can be sent). */
  version(): number;
}

export class SimWeightSender implements WeightSender {
  constructor(private readonly options: SimWeightSenderOptions) {}

  private bytes(): number {
    return Math.round(this.options.cost.rolloutWeightsGiBPerGpu * this.options.gpusPerRank * 2 ** 30);
  }

  async openWeightGroup(spec: WeightGroupSpec): Promise<WeightGroup> {
    fs.mkdirSync(groupDir(this.options.dir, spec.name), { recursive: true });
    fs.writeFileSync(path.join(groupDir(this.options.dir, spec.name), 'open'), JSON.stringify(spec));
    return { ...spec, masterPort: 0 };
  }

  async weightManifest(bucketBytes: number): Promise<WeightManifest> {
    const total = this.bytes();
    const count = Math.max(1, Math.ceil(total / bucketBytes));
    const buckets = Array.from({ length: count }, (_, i) => {
      const bytes = i < count - 1 ? bucketBytes : total - bucketBytes * (count - 1);
      return { names: [`weights.${i}`], dtypes: ['uint8'], shapes: [[bytes]], bytes };
    });
    return { buckets, totalBytes: total };
  }

  async broadcastWeights(groupName: string, version: number, bucketBytes: number, _layout: TensorLayout, signal?: AbortSignal): Promise<BroadcastResult> {
    const { name, dir, clock, cost, gpusPerRank } = this.options;
    if (!fs.existsSync(path.join(groupDir(dir, groupName), 'open'))) throw new EngineStateError(name, `broadcastWeights(v${version}): group ${groupName} is not open`);
    if (version !== this.options.version()) throw new EngineStateError(name, `broadcastWeights(v${version}): the trainer holds v${this.options.version()}`);
    const simMs = weightBroadcastMs(cost, gpusPerRank);
    await clock.sleep(simMs, signal);
    fs.writeFileSync(sentFile(dir, groupName, version), '');
    const bytes = this.bytes();
    return { bytes, buckets: Math.max(1, Math.ceil(bytes / bucketBytes)), tensors: Math.max(1, Math.ceil(bytes / bucketBytes)), seconds: simMs / 1000 };
  }

  async closeWeightGroup(groupName: string): Promise<void> {
    fs.rmSync(groupDir(this.options.dir, groupName), { recursive: true, force: true });
  }
}

export interface SimWeightReceiverOptions {
  name: string;
  dir: string;
  clock: SimClock;
  cost: CostModel;
  /** The group this engine is in (persisted with its state). */
  joined(): string | undefined;
  setJoined(group: string | undefined): void;
  /** Serves `version` from now on (checks resident weights and no running request). */
  apply(version: number): Promise<void>;
}

export class SimWeightReceiver implements WeightReceiver {
  constructor(private readonly options: SimWeightReceiverOptions) {}

  async joinWeightGroup(group: WeightGroup, _rankOffset: number, signal?: AbortSignal): Promise<void> {
    const { name, dir, clock, cost } = this.options;
    if (!fs.existsSync(path.join(groupDir(dir, group.name), 'open'))) throw new EngineStateError(name, `joinWeightGroup: group ${group.name} is not open on the trainer`);
    await clock.sleep(cost.weightGroupSetupMs, signal);
    this.options.setJoined(group.name);
  }

  async receiveWeights(group: WeightGroup, version: number, _manifest: WeightManifest, signal?: AbortSignal): Promise<void> {
    const { name, dir, clock } = this.options;
    if (this.options.joined() !== group.name) {
      throw new EngineStateError(name, `receiveWeights(v${version}): not in group ${group.name} (in ${this.options.joined() ?? 'none'})`);
    }
    // The transfer ends when the sender's does; until then the engine serves its old version.
    while (!fs.existsSync(sentFile(dir, group.name, version))) {
      if (!fs.existsSync(groupDir(dir, group.name))) throw new EngineStateError(name, `receiveWeights(v${version}): group ${group.name} was torn down`);
      await clock.sleep(POLL_SIM_MS, signal);
    }
    await this.options.apply(version);
  }

  async leaveWeightGroup(groupName: string): Promise<void> {
    if (this.options.joined() === groupName) this.options.setJoined(undefined);
  }
}

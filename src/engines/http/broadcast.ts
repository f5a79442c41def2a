/**
 * Weight sync by broadcast over HTTP: the engines' receiving side (SGLang, vLLM) and the
 * trainer's sending side (the trainer protocol, docs/trainer-openapi.yaml). The tensors travel
 * over the collective (NCCL on GPUs, gloo on CPU), never through these calls: the calls only
 * set the group up and tell each side which tensors to expect, so they carry no time limit of
 * their own; the workflow's deadline cancels them (signal).
 *
 *   SGLang   POST /init_weights_update_group {master_address, master_port, rank_offset, world_size, group_name, backend}
 *            POST /begin_weight_update {} (0.5.23 on; 404 before: no session needed)
 *            → POST /update_weights_from_distributed {names, dtypes, shapes, group_name, load_format: flattened_bucket, weight_version (last bucket)}
 *            → POST /end_weight_update {}
 *            POST /destroy_weights_update_group {group_name}
 *   vLLM     POST /init_weight_transfer_engine {init_info: {master_address, master_port, rank_offset, world_size, packed: false}}
 *            POST /start_weight_update → POST /update_weights {update_info: {names, dtype_names, shapes}}
 *            → POST /finish_weight_update → POST /reset_prefix_cache, then POST /update_weight_version {new_version}
 *            POST /shutdown_weight_transfer_engine (0.34 on)
 *   trainer  POST /trainer/init_weights_update_group, /trainer/weights_manifest, /trainer/broadcast_weights,
 *            /trainer/destroy_weights_update_group
 */
import { z } from 'zod';
import type { BroadcastResult, TensorLayout, WeightGroup, WeightGroupSpec, WeightManifest, WeightReceiver, WeightSender } from '../types';
import { unlessNotServed, type HttpClient } from './client';
import { EngineHttpError, EngineProtocolError } from './errors';

const successSchema = z.object({ success: z.boolean(), message: z.string().optional() }).loose();
/** The trainer's answer to opening a group (docs/trainer-openapi.yaml): `success` first, the address only when it succeeded. */
const openedSchema = z.discriminatedUnion('success', [
  z.object({ success: z.literal(true), master_address: z.string().min(1), master_port: z.number().int().min(1).max(65_535) }).loose(),
  z.object({ success: z.literal(false), message: z.string().optional() }).loose(),
]);
const manifestSchema = z.object({
  buckets: z
    .array(
      z.object({
        names: z.array(z.string().min(1)).min(1),
        dtypes: z.array(z.string().min(1)),
        shapes: z.array(z.array(z.number().int().nonnegative())),
        bytes: z.number().int().nonnegative(),
      }),
    )
    .min(1),
  total_bytes: z.number().int().nonnegative(),
});
const broadcastSchema = z
  .object({
    version: z.number().int().nonnegative(),
    bytes: z.number().int().nonnegative(),
    buckets: z.number().int().nonnegative(),
    tensors: z.number().int().nonnegative(),
    seconds: z.number().nonnegative(),
  })
  .loose();

/** What SGLang's answer to leaving a group it does not hold says. */
const GROUP_NOT_HELD = 'does not exist';

/** No HTTP time limit: a collective call lasts as long as the transfer; the caller's signal ends it. */
const collective = (signal?: AbortSignal) => ({ timeoutMs: null, ...(signal === undefined ? {} : { signal }) });

/** SGLang: one `update_weights_from_distributed` per bucket, the version set with the last one. */
export class SglangWeightReceiver implements WeightReceiver {
  constructor(
    private readonly http: HttpClient,
    private readonly onVersion: (version: number) => void,
  ) {}

  async joinWeightGroup(group: WeightGroup, rankOffset: number, signal?: AbortSignal): Promise<void> {
    const body = {
      master_address: group.masterAddress,
      master_port: group.masterPort,
      rank_offset: rankOffset,
      world_size: group.worldSize,
      group_name: group.name,
      backend: group.backend,
    };
    const answer = await this.http.json('POST', '/init_weights_update_group', body, successSchema, collective(signal));
    if (!answer.success) throw new EngineProtocolError(this.http.endpoint('POST', '/init_weights_update_group'), `joining ${group.name} failed: ${this.http.redact(answer.message ?? '')}`);
  }

  async receiveWeights(group: WeightGroup, version: number, manifest: WeightManifest, signal?: AbortSignal): Promise<void> {
    const session = await this.beginSession(signal);
    try {
      await this.receiveBuckets(group, version, manifest, signal);
    } catch (error) {
      // A session left open is closed by the next sync's begin (beginSession): this failure is the one to report.
      if (session) await this.http.call('POST', '/end_weight_update', {}).catch(() => undefined);
      throw error;
    }
    if (session) await this.http.call('POST', '/end_weight_update', {}, collective(signal));
    this.onVersion(version);
  }

  /**
   * Opens SGLang's weight update session (0.5.23 on: bucket updates are refused outside one).
   * False when the server has no sessions (404: before 0.5.23). One refused (an interrupted sync
   * left it open) is closed, and opened again once.
   */
  private async beginSession(signal?: AbortSignal): Promise<boolean> {
    const begin = async (): Promise<boolean> => (await unlessNotServed(this.http.call('POST', '/begin_weight_update', {}, collective(signal)).then(() => true))) ?? false;
    try {
      return await begin();
    } catch (error) {
      if (!(error instanceof EngineHttpError) || error.status === undefined || error.status < 400 || error.status >= 500) throw error;
      await this.http.call('POST', '/end_weight_update', {}, collective(signal));
      return await begin();
    }
  }

  private async receiveBuckets(group: WeightGroup, version: number, manifest: WeightManifest, signal?: AbortSignal): Promise<void> {
    const endpoint = this.http.endpoint('POST', '/update_weights_from_distributed');
    for (const [index, bucket] of manifest.buckets.entries()) {
      const last = index === manifest.buckets.length - 1;
      const answer = await this.http.json(
        'POST',
        '/update_weights_from_distributed',
        {
          names: bucket.names,
          dtypes: bucket.dtypes,
          shapes: bucket.shapes,
          group_name: group.name,
          load_format: 'flattened_bucket',
          flush_cache: last,
          abort_all_requests: false,
          ...(last ? { weight_version: String(version) } : {}),
        },
        successSchema,
        collective(signal),
      );
      if (!answer.success) throw new EngineProtocolError(endpoint, `bucket ${index + 1}/${manifest.buckets.length} of v${version} in ${group.name}: ${this.http.redact(answer.message ?? '')}`);
    }
  }

  /** Idempotent: a group the engine does not hold (left before, or the engine restarted) is left. */
  async leaveWeightGroup(groupName: string): Promise<void> {
    try {
      await this.http.call('POST', '/destroy_weights_update_group', { group_name: groupName });
    } catch (error) {
      // SGLang answers 400 {success: false, message: "The group to be destroyed does not exist."}.
      if (error instanceof EngineHttpError && error.status === 400 && error.message.includes(GROUP_NOT_HELD)) return;
      throw error;
    }
  }
}

/**
 * vLLM's weight-transfer engine: start → one update per bucket → finish, then the version (which
 * the adapter reads from the engine before each turn, not from here).
 */
export class VllmWeightReceiver implements WeightReceiver {
  constructor(private readonly http: HttpClient) {}

  async joinWeightGroup(group: WeightGroup, rankOffset: number, signal?: AbortSignal): Promise<void> {
    // The backend is vLLM's start option (--weight-transfer-config); the init names none. One
    // broadcast per tensor (not packed), an init option since vLLM 0.34.
    const initInfo = { master_address: group.masterAddress, master_port: group.masterPort, rank_offset: rankOffset, world_size: group.worldSize, packed: false };
    await this.http.call('POST', '/init_weight_transfer_engine', { init_info: initInfo }, collective(signal));
  }

  async receiveWeights(_group: WeightGroup, version: number, manifest: WeightManifest, signal?: AbortSignal): Promise<void> {
    await this.http.call('POST', '/start_weight_update', undefined, collective(signal));
    for (const bucket of manifest.buckets) {
      // vLLM builds its update info from exactly these fields (0.34): anything more is refused.
      const updateInfo = { names: bucket.names, dtype_names: bucket.dtypes, shapes: bucket.shapes };
      await this.http.call('POST', '/update_weights', { update_info: updateInfo }, collective(signal));
    }
    await this.http.call('POST', '/finish_weight_update', {}, collective(signal));
    // vLLM keeps its prefix cache across an update: KV computed by the old weights must not serve the new ones.
    await this.http.call('POST', '/reset_prefix_cache');
    await this.http.call('POST', '/update_weight_version', { new_version: String(version) });
  }

  /** vLLM has one transfer engine per server: shut down (a new init would not free the old group's communicator). Before vLLM 0.34 there is no such call (404). */
  async leaveWeightGroup(): Promise<void> {
    await unlessNotServed(this.http.call('POST', '/shutdown_weight_transfer_engine', {}));
  }
}

export class HttpWeightSender implements WeightSender {
  constructor(private readonly http: HttpClient) {}

  async openWeightGroup(spec: WeightGroupSpec): Promise<WeightGroup> {
    const body = { group_name: spec.name, master_address: spec.masterAddress, master_port: 0, world_size: spec.worldSize, backend: spec.backend };
    const opened = await this.http.json('POST', '/trainer/init_weights_update_group', body, openedSchema);
    if (!opened.success) {
      throw new EngineProtocolError(this.http.endpoint('POST', '/trainer/init_weights_update_group'), `opening ${spec.name} failed: ${this.http.redact(opened.message ?? '(no message)')}`);
    }
    return { name: spec.name, masterAddress: opened.master_address, masterPort: opened.master_port, worldSize: spec.worldSize, backend: spec.backend };
  }

  async weightManifest(bucketBytes: number): Promise<WeightManifest> {
    const body = await this.http.json('POST', '/trainer/weights_manifest', { bucket_bytes: bucketBytes }, manifestSchema);
    const endpoint = this.http.endpoint('POST', '/trainer/weights_manifest');
    for (const [index, bucket] of body.buckets.entries()) {
      if (bucket.dtypes.length !== bucket.names.length || bucket.shapes.length !== bucket.names.length) {
        throw new EngineProtocolError(endpoint, `bucket ${index}: names, dtypes and shapes differ in length`);
      }
      // A flattened bucket travels as one tensor of one dtype (SGLang's flattened_bucket).
      const dtypes = new Set(bucket.dtypes);
      if (dtypes.size > 1) throw new EngineProtocolError(endpoint, `bucket ${index}: tensors of several dtypes (${[...dtypes].join(', ')}); a bucket holds consecutive tensors of one dtype`);
    }
    const sum = body.buckets.reduce((total, bucket) => total + bucket.bytes, 0);
    if (sum !== body.total_bytes) throw new EngineProtocolError(endpoint, `total_bytes ${body.total_bytes} is not the sum of the buckets (${sum})`);
    return { buckets: body.buckets, totalBytes: body.total_bytes };
  }

  async broadcastWeights(groupName: string, version: number, bucketBytes: number, layout: TensorLayout, signal?: AbortSignal): Promise<BroadcastResult> {
    const body = await this.http.json('POST', '/trainer/broadcast_weights', { group_name: groupName, version, bucket_bytes: bucketBytes, format: layout }, broadcastSchema, collective(signal));
    if (body.version !== version) throw new EngineProtocolError(this.http.endpoint('POST', '/trainer/broadcast_weights'), `broadcast of v${version} answered for v${body.version}`);
    return { bytes: body.bytes, buckets: body.buckets, tensors: body.tensors, seconds: body.seconds };
  }

  async closeWeightGroup(groupName: string): Promise<void> {
    await this.http.call('POST', '/trainer/destroy_weights_update_group', { group_name: groupName });
  }
}

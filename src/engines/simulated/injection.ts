/**
 * Faults injected into running simulated engines (the fault-injection harness, `timeshare chaos`).
 * Unlike the declared faults (faults.ts, fixed in the config), these arrive while the run goes on:
 * the harness drops a JSON file into `<dir>/pending/`, and the next engine call that matches it
 * takes it by renaming it into `<dir>/fired/` (atomic: exactly one call, in one process, fires
 * each fault, even across worker restarts). Kinds:
 *
 * - `error`: the call fails, as an engine answering with an error would;
 * - `crash`: the process holding the engine dies on the spot (SIGKILL; the engine runs in the
 *   gpu-node worker's process, so an engine crash takes the worker with it);
 * - `hang`: the process freezes for `durationMs` (no event loop, so no heartbeat), then the call
 *   goes on: set it past the heartbeat timeout and Temporal retries the activity elsewhere;
 * - `slow`: the call answers `durationMs` late (heartbeats continue), or sooner once the harness
 *   releases it (releaseFault): a test holds a call at a known point for as long as it needs;
 * - `restart` (rollout engines only): the engine's process restarted just before the call, its
 *   worker staying up: it serves its base weights again, in no weight group (SimRolloutEngine.restart).
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { memoryTagSchema, type MemoryTag, type RolloutEngine, type Trainer, type TrainBatch, type TurnRequest, type WeightReceiver, type WeightSender } from '../types';
import { SimulatedEngineFault } from './faults';
import { writeJsonAtomic } from './persistentState';

export const INJECTED_FAULT_KINDS = ['error', 'crash', 'hang', 'slow', 'restart'] as const;
export type InjectedFaultKind = (typeof INJECTED_FAULT_KINDS)[number];

export const ROLLOUT_OPERATIONS = ['generate', 'releaseMemory', 'resumeMemory', 'updateWeights', 'joinWeightGroup', 'receiveWeights'] as const;
export const TRAINER_OPERATIONS = ['onload', 'trainStep', 'exportWeights', 'offload', 'broadcastWeights'] as const;

export const injectedFaultSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, { error: 'expected an id of 1..100 letters, digits, dot, dash or underscore' }),
    target: z.enum(['rollout', 'trainer']),
    operation: z.enum([...ROLLOUT_OPERATIONS, ...TRAINER_OPERATIONS]),
    kind: z.enum(INJECTED_FAULT_KINDS),
    /** Only this rank (rollout) or node (trainer); omitted: any. */
    at: z.number().int().nonnegative().optional(),
    /** releaseMemory / resumeMemory only: fire only on a call that includes this tag. */
    tag: memoryTagSchema.optional(),
    /** hang: how long the process freezes; slow: how late the call answers. */
    durationMs: z.number().int().min(0).max(600_000).default(0),
  })
  .strict()
  .refine((fault) => (fault.target === 'trainer') === (TRAINER_OPERATIONS as readonly string[]).includes(fault.operation), {
    message: 'operation does not belong to the target',
    path: ['operation'],
  })
  .refine((fault) => fault.tag === undefined || fault.operation === 'releaseMemory' || fault.operation === 'resumeMemory', {
    message: 'tag applies to releaseMemory and resumeMemory only',
    path: ['tag'],
  })
  .refine((fault) => fault.kind !== 'restart' || fault.target === 'rollout', {
    message: 'restart applies to rollout engines only',
    path: ['kind'],
  });
export type InjectedFault = z.infer<typeof injectedFaultSchema>;
export type InjectedFaultInput = z.input<typeof injectedFaultSchema>;

/** What the injector records in `fired/<id>.json`. */
export interface FiredFault extends InjectedFault {
  firedAtMs: number;
  pid: number;
}

export const pendingDir = (dir: string): string => path.join(dir, 'pending');
export const firedDir = (dir: string): string => path.join(dir, 'fired');
const releasedFile = (dir: string, id: string): string => path.join(dir, 'released', id);
const RELEASE_POLL_MS = 50;

/** Harness side: queues a fault for the engines watching `dir` (validated; written atomically). */
export function injectFault(dir: string, fault: InjectedFaultInput): InjectedFault {
  const parsed = injectedFaultSchema.parse(fault);
  const file = path.join(pendingDir(dir), `${parsed.id}.json`);
  if (fs.existsSync(file) || fs.existsSync(path.join(firedDir(dir), `${parsed.id}.json`))) {
    throw new Error(`fault ${parsed.id} was already injected into ${dir}`);
  }
  writeJsonAtomic(file, parsed);
  return parsed;
}

/** Harness side: the faults that fired so far, by id. */
export function firedFaults(dir: string): Map<string, FiredFault> {
  const fired = new Map<string, FiredFault>();
  const folder = firedDir(dir);
  if (!fs.existsSync(folder)) return fired;
  for (const name of fs.readdirSync(folder).filter((n) => n.endsWith('.json'))) {
    const record = JSON.parse(fs.readFileSync(path.join(folder, name), 'utf8')) as FiredFault;
    fired.set(record.id, record);
  }
  return fired;
}

/** Harness side: ends a `slow` fault's delay now, or at its firing if it has not fired yet. */
export function releaseFault(dir: string, id: string): void {
  const file = releasedFile(dir, id);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '');
}

/** Resolves after the fault's duration, or as soon as the harness releases it. */
async function slowUnlessReleased(dir: string, fault: InjectedFault): Promise<void> {
  const until = Date.now() + fault.durationMs;
  const released = releasedFile(dir, fault.id);
  while (Date.now() < until && !fs.existsSync(released)) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(RELEASE_POLL_MS, until - Date.now())));
  }
}

/** Harness side: faults queued and not fired (e.g. the operation never ran); removed. */
export function withdrawPending(dir: string): string[] {
  const folder = pendingDir(dir);
  if (!fs.existsSync(folder)) return [];
  const ids: string[] = [];
  for (const name of fs.readdirSync(folder).filter((n) => n.endsWith('.json'))) {
    fs.rmSync(path.join(folder, name), { force: true });
    ids.push(name.replace(/\.json$/, ''));
  }
  return ids;
}

function freeze(ms: number): void {
  // Blocks the whole process, as a hung engine host would: no timers, no heartbeats.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class FaultInjector {
  constructor(private readonly dir: string) {}

  /**
   * Engine side: called before each engine call; fires the first matching pending fault.
   * `restart`: how the engine restarts (rollout engines that can; a `restart` fault without it fails).
   */
  async before(target: InjectedFault['target'], operation: InjectedFault['operation'], at: number, tags?: readonly MemoryTag[], restart?: () => void): Promise<void> {
    const fault = this.take(target, operation, at, tags);
    if (fault === undefined) return;
    const what = `injected fault ${fault.id}: ${target} ${at} ${operation}`;
    switch (fault.kind) {
      case 'error':
        throw new SimulatedEngineFault(`${what} failed (error response)`);
      case 'crash':
        process.kill(process.pid, 'SIGKILL');
        await new Promise(() => undefined);
        return;
      case 'hang':
        freeze(fault.durationMs);
        return;
      case 'slow':
        await slowUnlessReleased(this.dir, fault);
        return;
      case 'restart':
        if (restart === undefined) throw new Error(`${what}: this engine cannot be restarted by the harness (a simulated rollout engine can)`);
        restart();
        return;
    }
  }

  private take(target: InjectedFault['target'], operation: InjectedFault['operation'], at: number, tags?: readonly MemoryTag[]): InjectedFault | undefined {
    const folder = pendingDir(this.dir);
    let names: string[];
    try {
      names = fs.readdirSync(folder).filter((name) => name.endsWith('.json')).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    for (const name of names) {
      const file = path.join(folder, name);
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // taken by another call
        throw error;
      }
      const parsed = injectedFaultSchema.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(`injected fault file ${file} is invalid: ${parsed.error.message}`);
      const fault = parsed.data;
      if (fault.target !== target || fault.operation !== operation) continue;
      if (fault.at !== undefined && fault.at !== at) continue;
      if (fault.tag !== undefined && !(tags ?? []).includes(fault.tag)) continue;
      const fired = path.join(firedDir(this.dir), name);
      fs.mkdirSync(firedDir(this.dir), { recursive: true });
      try {
        fs.renameSync(file, fired);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // another call took it first
        throw error;
      }
      const record: FiredFault = { ...fault, firedAtMs: Date.now(), pid: process.pid };
      writeJsonAtomic(fired, record);
      return fault;
    }
    return undefined;
  }
}

/** `restart`: how the engine's process restarts (SimRolloutEngine.restart), for `restart` faults. */
export function injectableRolloutEngine(engine: RolloutEngine, injector: FaultInjector, rank: number, restart?: () => void): RolloutEngine {
  return {
    generate: async (request: TurnRequest, signal?: AbortSignal) => {
      await injector.before('rollout', 'generate', rank, undefined, restart);
      return engine.generate(request, signal);
    },
    abortAll: () => engine.abortAll(),
    releaseMemory: async (tags: readonly MemoryTag[]) => {
      await injector.before('rollout', 'releaseMemory', rank, tags, restart);
      return engine.releaseMemory(tags);
    },
    resumeMemory: async (tags: readonly MemoryTag[]) => {
      await injector.before('rollout', 'resumeMemory', rank, tags, restart);
      return engine.resumeMemory(tags);
    },
    updateWeights: async (version: number, weightsPath: string) => {
      await injector.before('rollout', 'updateWeights', rank, undefined, restart);
      return engine.updateWeights(version, weightsPath);
    },
    status: () => engine.status(),
    kvCapacityTokens: () => engine.kvCapacityTokens(),
    ...(engine.broadcast === undefined ? {} : { broadcast: injectableReceiver(engine.broadcast, injector, rank, restart) }),
  };
}

function injectableReceiver(receiver: WeightReceiver, injector: FaultInjector, rank: number, restart?: () => void): WeightReceiver {
  return {
    joinWeightGroup: async (group, rankOffset, signal) => {
      await injector.before('rollout', 'joinWeightGroup', rank, undefined, restart);
      return receiver.joinWeightGroup(group, rankOffset, signal);
    },
    receiveWeights: async (group, version, manifest, signal) => {
      await injector.before('rollout', 'receiveWeights', rank, undefined, restart);
      return receiver.receiveWeights(group, version, manifest, signal);
    },
    leaveWeightGroup: (groupName) => receiver.leaveWeightGroup(groupName),
  };
}

function injectableSender(sender: WeightSender, injector: FaultInjector, node: number): WeightSender {
  return {
    openWeightGroup: (spec) => sender.openWeightGroup(spec),
    weightManifest: (bucketBytes) => sender.weightManifest(bucketBytes),
    broadcastWeights: async (groupName, version, bucketBytes, layout, signal) => {
      await injector.before('trainer', 'broadcastWeights', node);
      return sender.broadcastWeights(groupName, version, bucketBytes, layout, signal);
    },
    closeWeightGroup: (groupName) => sender.closeWeightGroup(groupName),
  };
}

export function injectableTrainer(trainer: Trainer, injector: FaultInjector, node: number): Trainer {
  return {
    onload: async () => {
      await injector.before('trainer', 'onload', node);
      return trainer.onload();
    },
    trainStep: async (batch: TrainBatch, signal?: AbortSignal) => {
      await injector.before('trainer', 'trainStep', node);
      return trainer.trainStep(batch, signal);
    },
    exportWeights: async (version: number, dir: string) => {
      await injector.before('trainer', 'exportWeights', node);
      return trainer.exportWeights(version, dir);
    },
    offload: async () => {
      await injector.before('trainer', 'offload', node);
      return trainer.offload();
    },
    status: () => trainer.status(),
    ...(trainer.broadcast === undefined ? {} : { broadcast: injectableSender(trainer.broadcast, injector, node) }),
  };
}

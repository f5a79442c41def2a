/**
 * A per-process ledger of simulated GPU memory: who holds how many GiB on which GPU.
 *
 * The rollout engines and the trainer of one gpu-node worker share one ledger, so the orders
 * that would crash a real node crash here too: training on a GPU whose rollout engine has not
 * released its memory raises SimulatedOutOfMemoryError instead of silently "working".
 * The ledger is strict: an owner allocating twice on a GPU, or freeing what it does not hold,
 * is a bookkeeping bug in the caller and throws.
 */
import type { GpuId } from '../../gpu/layout';
import { checkIntRange, checkNoDuplicates, checkSubset } from '../../validation/patterns';

/** Tolerance for GiB arithmetic (sums of fractional sizes). */
const EPSILON_GIB = 1e-9;

export interface GpuHolding {
  owner: string;
  gib: number;
}

function renderHolders(holders: readonly GpuHolding[]): string {
  return holders.length === 0 ? 'none' : holders.map((h) => `${h.owner} ${formatGiB(h.gib)} GiB`).join(', ');
}

function formatGiB(gib: number): string {
  return Number.isInteger(gib) ? String(gib) : gib.toFixed(2);
}

export class SimulatedOutOfMemoryError extends Error {
  constructor(
    readonly gpu: GpuId,
    readonly requester: string,
    readonly requestedGiB: number,
    readonly freeGiB: number,
    readonly capacityGiB: number,
    readonly holders: readonly GpuHolding[],
  ) {
    super(
      `simulated CUDA out of memory on GPU ${gpu}: ${requester} requested ${formatGiB(requestedGiB)} GiB but only ` +
        `${formatGiB(freeGiB)} of ${formatGiB(capacityGiB)} GiB are free; held by: ${renderHolders(holders)}`,
    );
    this.name = 'SimulatedOutOfMemoryError';
  }
}

/** Misuse of the ledger (double allocation, freeing memory not held): a caller bug, not an OOM. */
export class SimGpuMemoryLedgerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimGpuMemoryLedgerError';
  }
}

export interface SimGpuMemoryOptions {
  /** Memory of each GPU (GiB). */
  capacityGiB: number;
  /**
   * The GPUs this process manages (global ids); calls naming others are rejected. Omitted: any
   * GPU id is accepted and gets a ledger entry on first use.
   */
  gpus?: readonly GpuId[];
}

export class SimGpuMemory {
  readonly capacityGiB: number;
  private readonly fixedGpus: boolean;
  /** gpu → owner → GiB. Insertion order is allocation order, which keeps messages stable. */
  private readonly ledger = new Map<GpuId, Map<string, number>>();

  constructor(options: SimGpuMemoryOptions) {
    if (!(Number.isFinite(options.capacityGiB) && options.capacityGiB > 0)) {
      throw new RangeError(`SimGpuMemory: capacityGiB must be a finite number > 0, got ${options.capacityGiB}`);
    }
    this.capacityGiB = options.capacityGiB;
    this.fixedGpus = options.gpus !== undefined;
    checkNoDuplicates('SimGpuMemory gpus', options.gpus ?? []);
    for (const gpu of options.gpus ?? []) {
      checkIntRange('SimGpuMemory gpu id', gpu, 0, Number.MAX_SAFE_INTEGER);
      this.ledger.set(gpu, new Map());
    }
  }

  get gpus(): GpuId[] {
    return [...this.ledger.keys()];
  }

  private checkGpus(subject: string, gpus: readonly GpuId[]): void {
    checkNoDuplicates(subject, gpus);
    if (this.fixedGpus) {
      checkSubset(subject, gpus, this.ledger.keys(), { universeName: "this process's GPUs" });
      return;
    }
    for (const gpu of gpus) {
      checkIntRange(subject, gpu, 0, Number.MAX_SAFE_INTEGER);
      if (!this.ledger.has(gpu)) this.ledger.set(gpu, new Map());
    }
  }

  private holdingsOf(gpu: GpuId): Map<string, number> {
    const holdings = this.ledger.get(gpu);
    if (holdings !== undefined) return holdings;
    if (this.fixedGpus) throw new SimGpuMemoryLedgerError(`GPU ${gpu} is not managed by this ledger (GPUs: ${this.gpus.join(', ')})`);
    // Open ledger: a GPU nobody has touched yet is empty.
    return new Map();
  }

  usedGiB(gpu: GpuId): number {
    let used = 0;
    for (const gib of this.holdingsOf(gpu).values()) used += gib;
    return used;
  }

  freeGiB(gpu: GpuId): number {
    return this.capacityGiB - this.usedGiB(gpu);
  }

  holders(gpu: GpuId): GpuHolding[] {
    return [...this.holdingsOf(gpu)].map(([owner, gib]) => ({ owner, gib }));
  }

  /** Whether `owner` has an allocation on `gpu` (possibly of 0 GiB). */
  holds(owner: string, gpu: GpuId): boolean {
    return this.holdingsOf(gpu).has(owner);
  }

  /** GiB `owner` holds on `gpu` (0 if none). */
  heldGiB(owner: string, gpu: GpuId): number {
    return this.holdingsOf(gpu).get(owner) ?? 0;
  }

  /**
   * Allocates `gib` on each of `gpus` for `owner`, all or nothing: if any GPU lacks room, throws
   * SimulatedOutOfMemoryError for the first such GPU and allocates nothing.
   */
  allocate(owner: string, gpus: readonly GpuId[], gib: number): void {
    if (owner.length === 0) throw new SimGpuMemoryLedgerError('allocate: owner must be a non-empty name');
    if (!(Number.isFinite(gib) && gib >= 0)) throw new RangeError(`allocate: GiB must be a finite number >= 0, got ${gib}`);
    this.checkGpus(`GPUs ${owner} allocates on`, gpus);
    for (const gpu of gpus) {
      if (this.holdingsOf(gpu).has(owner)) {
        throw new SimGpuMemoryLedgerError(`${owner} already holds ${formatGiB(this.heldGiB(owner, gpu))} GiB on GPU ${gpu}: allocating again is a bookkeeping bug`);
      }
      const free = this.freeGiB(gpu);
      if (gib > free + EPSILON_GIB) {
        throw new SimulatedOutOfMemoryError(gpu, owner, gib, free, this.capacityGiB, this.holders(gpu));
      }
    }
    for (const gpu of gpus) this.holdingsOf(gpu).set(owner, gib);
  }

  /**
   * Makes sure `owner` holds memory on every one of `gpus`: a no-op where the ledger already
   * shows it on all of them (the engine object was re-created in the same process), an
   * allocation where it shows it on none (a fresh ledger in a new worker process, while the
   * engine kept its memory). Holding it on some GPUs only is an inconsistency and throws.
   */
  adopt(owner: string, gpus: readonly GpuId[], gib: number): void {
    this.checkGpus(`GPUs ${owner} adopts`, gpus);
    const holding = gpus.filter((gpu) => this.holds(owner, gpu));
    if (holding.length === gpus.length) return;
    if (holding.length > 0) {
      throw new SimGpuMemoryLedgerError(`${owner} holds memory on GPU(s) ${holding.join(', ')} but not on all of ${gpus.join(', ')}: inconsistent ledger`);
    }
    this.allocate(owner, gpus, gib);
  }

  /** Frees everything `owner` holds on `gpus`. The owner must hold memory on each of them. */
  free(owner: string, gpus: readonly GpuId[]): void {
    this.checkGpus(`GPUs ${owner} frees`, gpus);
    const missing = gpus.filter((gpu) => !this.holdingsOf(gpu).has(owner));
    if (missing.length > 0) {
      throw new SimGpuMemoryLedgerError(`${owner} frees memory on GPU(s) ${missing.join(', ')} where it holds none: a bookkeeping bug`);
    }
    for (const gpu of gpus) this.holdingsOf(gpu).delete(owner);
  }

  /** A readable dump of the ledger (for logs and error messages). */
  describe(): string {
    return [...this.ledger.keys()].map((gpu) => `GPU ${gpu}: ${renderHolders(this.holders(gpu))}`).join('; ');
  }
}

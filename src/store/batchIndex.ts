/**
 * Which batch each sample is in, for every manifest a store process has read: four bytes per
 * sample id instead of a Map entry (about 50 bytes with the manifests' own id arrays kept
 * alongside; 268 MiB at 10 000 batches of 512, docs/benchmarks.md "Store manifests as a run
 * grows"). Sample ids are issued densely from 0, so a typed array indexed by id holds them; an id
 * or iteration beyond its reach (never issued by the pipeline, but valid in the store) goes to a
 * Map instead.
 */
import { checkIntRange } from '../validation/patterns';
import { MAX_ID } from './types';

/** Ids below this live in the typed array (it grows by doubling, to 512 MiB at the most). */
const DENSE_IDS = 2 ** 27;
/** Stored as iteration + 1 in an Int32Array (0: in no batch). */
const DENSE_ITERATIONS = 2 ** 31 - 2;

export class BatchIndex {
  private dense = new Int32Array(0);
  private readonly sparse = new Map<number, number>();

  /** The iteration whose manifest lists `id` first, if any. */
  get(id: number): number | undefined {
    if (id < this.dense.length) {
      const stored = this.dense[id]!;
      if (stored !== 0) return stored - 1;
    }
    return this.sparse.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Records that `iteration`'s manifest lists `id`, unless an earlier-read manifest listed it already. */
  add(id: number, iteration: number): void {
    checkIntRange('batch index sample id', id, 0, MAX_ID);
    checkIntRange('batch index iteration', iteration, 0, MAX_ID);
    if (this.has(id)) return;
    if (id >= DENSE_IDS || iteration > DENSE_ITERATIONS) {
      this.sparse.set(id, iteration);
      return;
    }
    if (id >= this.dense.length) this.grow(id);
    this.dense[id] = iteration + 1;
  }

  private grow(id: number): void {
    let length = Math.max(this.dense.length, 1024);
    while (length <= id) length *= 2;
    const grown = new Int32Array(Math.min(length, DENSE_IDS));
    grown.set(this.dense);
    this.dense = grown;
  }
}

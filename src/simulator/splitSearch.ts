/**
 * The search for the best static split: which of `count` candidates (train-group sizes in
 * ascending order) scores highest. Each evaluation is a whole simulation, so the bounded search
 * simulates only the candidates a golden-section search over the sizes needs.
 *
 * What the bounded search assumes: the score is strictly unimodal in the candidate's index
 * (strictly rising, then strictly falling; either part may be empty). Under that assumption it
 * returns the same best as evaluating every candidate. It can miss when the score has a second
 * peak (e.g. noise of short runs making a neighbour look better than the trend) or a plateau
 * (two probes of equal score). The exhaustive search evaluates every candidate.
 */
import { checkIntRange, checkPostcondition } from '../validation/patterns';

export type SplitSearchMode = 'bounded' | 'exhaustive';

/** The golden section: probes at this share of the interval from either end. */
const GOLDEN_SHARE = (3 - Math.sqrt(5)) / 2;

/**
 * Evaluates candidates `0 .. count - 1` as the mode needs: every one (exhaustive), or a
 * golden-section search for the maximum of `score` (bounded; two probes per round, evaluated
 * concurrently, each candidate at most once). Returns the evaluations by candidate index.
 */
export async function searchBestCandidate<T>(
  count: number,
  mode: SplitSearchMode,
  evaluate: (index: number) => Promise<T>,
  score: (evaluation: T) => number,
): Promise<Map<number, T>> {
  checkIntRange('split search: number of candidates', count, 1, Number.MAX_SAFE_INTEGER);
  const evaluations = new Map<number, Promise<T>>();
  const evaluateOnce = (index: number): Promise<T> => {
    let evaluation = evaluations.get(index);
    if (evaluation === undefined) {
      evaluation = evaluate(index);
      evaluations.set(index, evaluation);
    }
    return evaluation;
  };
  let lo = 0;
  let hi = count - 1;
  if (mode === 'bounded') {
    // Invariant (strict unimodality): the best candidate lies in [lo, hi].
    while (hi - lo > 2) {
      const [low, high] = probes(lo, hi);
      const [a, b] = await Promise.all([evaluateOnce(low), evaluateOnce(high)]);
      const scoreLow = finiteScore(score, a, low);
      const scoreHigh = finiteScore(score, b, high);
      if (scoreLow < scoreHigh) lo = low + 1;
      else if (scoreLow > scoreHigh) hi = high - 1;
      else [lo, hi] = [low, high];
    }
  }
  for (let index = lo; index <= hi; index++) void evaluateOnce(index);
  const settled = await Promise.all([...evaluations].map(async ([index, evaluation]) => [index, await evaluation] as const));
  return new Map(settled.sort(([a], [b]) => a - b));
}

/** A score the search can compare (NaN would compare as neither higher nor lower). */
function finiteScore<T>(score: (evaluation: T) => number, evaluation: T, index: number): number {
  const value = score(evaluation);
  if (!Number.isFinite(value)) throw new Error(`split search: candidate ${index} scored ${value}; a score must be a finite number`);
  return value;
}

/** Two distinct probes inside [lo, hi] near the golden section (hi - lo > 2). */
function probes(lo: number, hi: number): [number, number] {
  const offset = Math.max(1, Math.round((hi - lo) * GOLDEN_SHARE));
  let low = lo + offset;
  let high = hi - offset;
  if (low >= high) {
    low = lo + Math.floor((hi - lo) / 2);
    high = low + 1;
  }
  checkPostcondition('split search: probes inside the interval', lo <= low && low < high && high <= hi, () => JSON.stringify({ lo, hi, low, high }));
  return [low, high];
}

/** The index of the highest score among the evaluations; the lowest index on a tie. */
export function bestCandidate<T>(evaluations: ReadonlyMap<number, T>, score: (evaluation: T) => number): number {
  let best: { index: number; score: number } | undefined;
  for (const [index, evaluation] of [...evaluations].sort(([a], [b]) => a - b)) {
    const value = finiteScore(score, evaluation, index);
    if (best === undefined || value > best.score) best = { index, score: value };
  }
  if (best === undefined) throw new Error('split search: no candidate was evaluated');
  return best.index;
}

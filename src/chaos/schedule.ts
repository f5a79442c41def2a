/**
 * The fault schedule of the fault-injection harness: which fault, in which phase, at which point.
 * Pure and seeded (the same seed gives the same schedule), so a failing soak can be re-run.
 *
 * A schedule first covers every applicable (fault kind × phase) pair once, in a shuffled order,
 * then draws further faults at random; `count` below the number of pairs keeps a prefix of the
 * shuffled pairs (choose `kinds` / `phases` to pin what a short run covers).
 */
import { uniform01 } from '../engines/simulated/random';
import { checkIntRange, checkNoDuplicates, checkNonEmpty } from '../validation/patterns';

/** The iteration phases a fault is aimed at (the status phases of docs/design.md §3.1). */
export const FAULT_PHASES = ['rollout', 'shrink', 'train', 'sync', 'expand'] as const;
export type FaultPhase = (typeof FAULT_PHASES)[number];

/**
 * Components and how they fail: processes are SIGKILLed; engines crash, hang, answer errors or
 * answer slowly; a rollout engine's process restarts under its live worker (base weights, no group).
 */
export const FAULT_KINDS = [
  'orchestrator-kill',
  'gpu-node-kill',
  'server-kill',
  'engine-crash',
  'engine-hang',
  'engine-error',
  'engine-slow',
  'engine-restart',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const isEngineFault = (kind: FaultKind): boolean => kind.startsWith('engine-');

/**
 * Whether a kind can be aimed at a phase. A restart is a rollout engine's: not at train (the
 * trainer's operation defines it), nor at expand, which ends the iteration: an engine restarted
 * there serves its base weights until its next shard catches it up, and the invariants after the
 * iteration hold every rank to the iteration's version.
 */
export function faultApplies(kind: FaultKind, phase: FaultPhase): boolean {
  return kind !== 'engine-restart' || (phase !== 'train' && phase !== 'expand');
}

/** The applicable (kind × phase) pairs of a selection, in kind order, then phase order. */
function applicablePairs(kinds: readonly FaultKind[], phases: readonly FaultPhase[]): { kind: FaultKind; phase: FaultPhase }[] {
  return kinds.flatMap((kind) => phases.filter((phase) => faultApplies(kind, phase)).map((phase) => ({ kind, phase })));
}

export interface PlannedFault {
  /** Position in the schedule; the harness injects fault i during iteration i. */
  index: number;
  kind: FaultKind;
  phase: FaultPhase;
  /** Where in the phase a process is killed: a fraction of the phase's hold time (0..1). */
  point: number;
}

export interface ScheduleOptions {
  seed: number;
  count: number;
  kinds?: readonly FaultKind[];
  phases?: readonly FaultPhase[];
}

export function planFaults(options: ScheduleOptions): PlannedFault[] {
  const kinds = options.kinds ?? FAULT_KINDS;
  const phases = options.phases ?? FAULT_PHASES;
  checkIntRange('fault count', options.count, 1, 10_000);
  checkIntRange('seed', options.seed, 0, 2 ** 31 - 1);
  checkNonEmpty('fault kinds', kinds);
  checkNoDuplicates('fault kinds', kinds);
  checkNonEmpty('fault phases', phases);
  checkNoDuplicates('fault phases', phases);
  let draw = 0;
  const next = (): number => uniform01(options.seed, 'chaos-schedule', draw++);

  const pairs = applicablePairs(kinds, phases);
  checkNonEmpty(`fault kind × phase pairs of ${kinds.join(',')} × ${phases.join(',')} (engine-restart applies to rollout, shrink and sync)`, pairs);
  // Fisher-Yates with the seeded draws.
  for (let i = pairs.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [pairs[i], pairs[j]] = [pairs[j]!, pairs[i]!];
  }
  const chosen = pairs.slice(0, options.count);
  while (chosen.length < options.count) chosen.push(pairs[Math.floor(next() * pairs.length)]!);
  return chosen.map((pair, index) => ({ index, ...pair, point: next() }));
}

/**
 * For an iteration `k` that will have no rollout phase (its batch complete at its start) while
 * fault `k` is aimed at rollout: the plan with fault `k` swapped for the next later fault aimed at
 * another phase, each keeping its iteration's index, and where fault `k` went. Undefined when
 * fault `k` is not aimed at rollout or no later fault is aimed elsewhere.
 */
export function deferRolloutFault(plan: readonly PlannedFault[], k: number): { plan: PlannedFault[]; movedTo: number } | undefined {
  checkIntRange('fault to defer', k, 0, plan.length - 1);
  if (plan[k]!.phase !== 'rollout') return undefined;
  const j = plan.findIndex((fault, index) => index > k && fault.phase !== 'rollout');
  if (j < 0) return undefined;
  const swapped = [...plan];
  swapped[k] = { ...plan[j]!, index: k };
  swapped[j] = { ...plan[k]!, index: j };
  return { plan: swapped, movedTo: j };
}

/** How many applicable (kind × phase) pairs of the selection a list of (kind, phase) observations covers. */
export function coverage(
  observed: readonly { kind: FaultKind; phase: string }[],
  kinds: readonly FaultKind[] = FAULT_KINDS,
  phases: readonly FaultPhase[] = FAULT_PHASES,
): { covered: number; total: number; missing: string[] } {
  const seen = new Set(observed.map((entry) => `${entry.kind}@${entry.phase}`));
  const pairs = applicablePairs(kinds, phases).map(({ kind, phase }) => `${kind}@${phase}`);
  const missing = pairs.filter((key) => !seen.has(key));
  const total = pairs.length;
  return { covered: total - missing.length, total, missing };
}

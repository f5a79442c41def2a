/**
 * Per-GPU roles and the transitions between them, as pure functions over plain data.
 *
 * A GPU has exactly one role at a time (the roles array is indexed by GPU id, so "two roles" is
 * unrepresentable); what can go wrong is an inconsistent combination — a serving rank with a GPU
 * in training, a train step on a GPU whose engine has not released it — and that is what the
 * preconditions and `checkPoolInvariants` reject. Every transition validates before it builds the
 * new state and checks the invariants after; the input state is never modified.
 */
import { rankById, totalGpus, type GpuId, type PoolLayout, type RankId } from './layout';
import { checkIntRange, checkNoDuplicates, checkNonEmpty, checkPostcondition, ValidationError } from '../validation/patterns';

export const GPU_ROLES = ['rollout', 'offloading', 'training', 'loading', 'idle', 'lost'] as const;
export type GpuRole = (typeof GPU_ROLES)[number];

/**
 * Where a rollout rank is in the shrink/expand cycle; 'lost': its node stopped answering for
 * longer than the lost-node timeout (docs/design.md §3.2), and the pool goes on without it.
 */
export const RANK_PHASES = ['serving', 'offloading', 'released', 'loading', 'lost'] as const;
export type RankPhase = (typeof RANK_PHASES)[number];

export interface PoolState {
  /** Role of each GPU, indexed by global GPU id. */
  roles: GpuRole[];
  /** Phase of each rollout rank, indexed by rank id. */
  rankPhases: RankPhase[];
}

/** The role a rank's GPUs have in each rank phase (unless the GPU is training). */
const ROLE_OF_PHASE: Record<RankPhase, GpuRole> = {
  serving: 'rollout',
  offloading: 'offloading',
  released: 'idle',
  loading: 'loading',
  lost: 'lost',
};

/** Every rank serving, except `lost` ranks (validated like any rank list). */
export function initialPoolState(layout: PoolLayout, lost: readonly RankId[] = []): PoolState {
  if (lost.length > 0) checkRankList(layout, 'lost ranks', lost);
  const lostSet = new Set(lost);
  const roles: GpuRole[] = Array.from({ length: totalGpus(layout) }, () => 'idle');
  for (const rank of layout.ranks) for (const gpu of rank.gpus) roles[gpu] = lostSet.has(rank.id) ? 'lost' : 'rollout';
  const state: PoolState = { roles, rankPhases: layout.ranks.map((rank) => (lostSet.has(rank.id) ? 'lost' : 'serving')) };
  checkPoolInvariants(layout, state);
  return state;
}

function checkRankList(layout: PoolLayout, subject: string, ranks: readonly RankId[]): void {
  checkNonEmpty(subject, ranks);
  checkNoDuplicates(subject, ranks);
  for (const rank of ranks) checkIntRange(`${subject}: rank id`, rank, 0, layout.ranks.length - 1);
}

function requirePhase(state: PoolState, subject: string, ranks: readonly RankId[], expected: RankPhase): void {
  const wrong = ranks.filter((rank) => state.rankPhases[rank] !== expected);
  if (wrong.length > 0) {
    throw new ValidationError(
      'AST_POSTCONDITION',
      subject,
      JSON.stringify(wrong.map((rank) => ({ rank, phase: state.rankPhases[rank] }))),
      `every rank must be '${expected}' first`,
    );
  }
}

/** Moves `ranks` from one phase to the next, giving their GPUs the phase's role. */
function moveRanks(layout: PoolLayout, state: PoolState, subject: string, ranks: readonly RankId[], from: RankPhase, to: RankPhase): PoolState {
  checkRankList(layout, subject, ranks);
  requirePhase(state, subject, ranks, from);
  const training = ranks.flatMap((rank) => rankById(layout, rank).gpus.filter((gpu) => state.roles[gpu] === 'training'));
  if (training.length > 0) {
    throw new ValidationError('AST_POSTCONDITION', subject, JSON.stringify(training), 'these GPUs are still training');
  }
  const roles = [...state.roles];
  const rankPhases = [...state.rankPhases];
  for (const rank of ranks) {
    rankPhases[rank] = to;
    for (const gpu of rankById(layout, rank).gpus) roles[gpu] = ROLE_OF_PHASE[to];
  }
  const next = { roles, rankPhases };
  checkPoolInvariants(layout, next);
  return next;
}

/** Shrink starts: the ranks stop serving and their engines release GPU memory. */
export const beginOffload = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState =>
  moveRanks(layout, state, 'beginOffload', ranks, 'serving', 'offloading');

/** The ranks' engines have released their memory: their GPUs are free. */
export const completeOffload = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState =>
  moveRanks(layout, state, 'completeOffload', ranks, 'offloading', 'released');

/** Expand starts: the released ranks reload their engines. */
export const beginOnload = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState =>
  moveRanks(layout, state, 'beginOnload', ranks, 'released', 'loading');

/** The ranks serve again. */
export const completeOnload = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState =>
  moveRanks(layout, state, 'completeOnload', ranks, 'loading', 'serving');

/** The ranks' node stopped answering: whatever phase they were in, they are out of the pool. */
export const markRanksLost = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState => {
  checkRankList(layout, 'markRanksLost', ranks);
  const already = ranks.filter((rank) => state.rankPhases[rank] === 'lost');
  if (already.length > 0) throw new ValidationError('AST_POSTCONDITION', 'markRanksLost', JSON.stringify(already), 'these ranks are already lost');
  let next = state;
  for (const phase of ['serving', 'offloading', 'released', 'loading'] as const) {
    const inPhase = ranks.filter((rank) => state.rankPhases[rank] === phase);
    if (inPhase.length > 0) next = moveRanks(layout, next, 'markRanksLost', inPhase, phase, 'lost');
  }
  return next;
};

/** The operator returned the ranks (their node is back): they reload before serving again (then completeOnload). */
export const rejoinRanks = (layout: PoolLayout, state: PoolState, ranks: readonly RankId[]): PoolState =>
  moveRanks(layout, state, 'rejoinRanks', ranks, 'lost', 'loading');

/** Ranks that own any of `gpus`. */
function ranksOwning(layout: PoolLayout, gpus: readonly GpuId[]): RankId[] {
  const wanted = new Set(gpus);
  return layout.ranks.filter((rank) => rank.gpus.some((gpu) => wanted.has(gpu))).map((rank) => rank.id);
}

/** The train group starts training: every train GPU must be idle (its rank, if any, released). */
export function beginTraining(layout: PoolLayout, state: PoolState): PoolState {
  const busy = layout.trainGpus.filter((gpu) => state.roles[gpu] !== 'idle');
  if (busy.length > 0) {
    throw new ValidationError(
      'AST_POSTCONDITION',
      'beginTraining',
      JSON.stringify(busy.map((gpu) => ({ gpu, role: state.roles[gpu] }))),
      'every train GPU must be idle (its rollout rank released) before training',
    );
  }
  const notReleased = ranksOwning(layout, layout.trainGpus).filter((rank) => state.rankPhases[rank] !== 'released');
  checkPostcondition('beginTraining: ranks owning train GPUs are released', notReleased.length === 0, () => JSON.stringify(notReleased));
  const roles = [...state.roles];
  for (const gpu of layout.trainGpus) roles[gpu] = 'training';
  const next = { roles, rankPhases: [...state.rankPhases] };
  checkPoolInvariants(layout, next);
  return next;
}

/** The train step is over: the train GPUs are idle again. */
export function endTraining(layout: PoolLayout, state: PoolState): PoolState {
  const notTraining = layout.trainGpus.filter((gpu) => state.roles[gpu] !== 'training');
  if (notTraining.length > 0) {
    throw new ValidationError('AST_POSTCONDITION', 'endTraining', JSON.stringify(notTraining), 'these train GPUs are not training');
  }
  const roles = [...state.roles];
  for (const gpu of layout.trainGpus) roles[gpu] = 'idle';
  const next = { roles, rankPhases: [...state.rankPhases] };
  checkPoolInvariants(layout, next);
  return next;
}

/**
 * The invariants of a pool state:
 *  - one valid role per GPU of the pool, one valid phase per rank;
 *  - a rank's GPUs have the role of its phase, except train GPUs of a released rank (training);
 *  - only train GPUs train; a GPU in no rank is idle or training.
 */
export function checkPoolInvariants(layout: PoolLayout, state: PoolState): void {
  const gpuCount = totalGpus(layout);
  checkPostcondition('pool state: one role per GPU', state.roles.length === gpuCount, () => `${state.roles.length} roles for ${gpuCount} GPUs`);
  checkPostcondition('pool state: one phase per rank', state.rankPhases.length === layout.ranks.length, () =>
    `${state.rankPhases.length} phases for ${layout.ranks.length} ranks`,
  );
  const badRoles = state.roles.map((role, gpu) => ({ gpu, role })).filter(({ role }) => !GPU_ROLES.includes(role));
  checkPostcondition('pool state: valid roles', badRoles.length === 0, () => JSON.stringify(badRoles));
  const badPhases = state.rankPhases.map((phase, rank) => ({ rank, phase })).filter(({ phase }) => !RANK_PHASES.includes(phase));
  checkPostcondition('pool state: valid rank phases', badPhases.length === 0, () => JSON.stringify(badPhases));

  const trainSet = new Set(layout.trainGpus);
  const strayTraining = state.roles.map((role, gpu) => ({ gpu, role })).filter(({ gpu, role }) => role === 'training' && !trainSet.has(gpu));
  checkPostcondition('pool state: only train GPUs train', strayTraining.length === 0, () => JSON.stringify(strayTraining));

  const inRank = new Set<GpuId>();
  const mismatched: { rank: RankId; phase: RankPhase; gpu: GpuId; role: GpuRole }[] = [];
  for (const rank of layout.ranks) {
    const phase = state.rankPhases[rank.id]!;
    for (const gpu of rank.gpus) {
      inRank.add(gpu);
      const role = state.roles[gpu]!;
      const allowed = role === ROLE_OF_PHASE[phase] || (phase === 'released' && role === 'training');
      if (!allowed) mismatched.push({ rank: rank.id, phase, gpu, role });
    }
  }
  checkPostcondition("pool state: a rank's GPUs have its phase's role (no GPU both serving and training)", mismatched.length === 0, () =>
    JSON.stringify(mismatched),
  );
  const strayOutside = state.roles
    .map((role, gpu) => ({ gpu, role }))
    .filter(({ gpu, role }) => !inRank.has(gpu) && role !== 'idle' && role !== 'training');
  checkPostcondition('pool state: GPUs outside rollout ranks are idle or training', strayOutside.length === 0, () => JSON.stringify(strayOutside));
}

export function roleCounts(state: PoolState): Record<GpuRole, number> {
  const counts: Record<GpuRole, number> = { rollout: 0, offloading: 0, training: 0, loading: 0, idle: 0, lost: 0 };
  for (const role of state.roles) counts[role] += 1;
  return counts;
}

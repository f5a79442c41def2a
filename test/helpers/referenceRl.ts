/** The reference RL run lives in src/bench/referenceRl.ts (scripts/reference-rl.ts runs it too). */
export * from '../../src/bench/referenceRl';

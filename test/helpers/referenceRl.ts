/** The reference RL run lives in src/launch/referenceRl.ts (scripts/reference-rl.ts runs it too). */
export * from '../../src/launch/referenceRl';

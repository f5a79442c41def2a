// The pure core: deterministic, no Temporal or Node imports (lint-enforced). Shared by workflows,
// activities, the CLI and (later) the simulator.
export * from './validation';
export * from './layout';
export * from './roles';
export * from './planning';
export * from './ledger';
export * from './policies';
export * from './lost';
export * from './staleness';

// The pure core: deterministic, no Temporal or Node imports (lint-enforced). Shared by workflows,
// activities, the CLI and the simulator. The validation patterns live in src/validation and are
// re-exported here for the core's users.
export * from '../validation/patterns';
export * from './layout';
export * from './roles';
export * from './planning';
export * from './ledger';
export * from './policies';
export * from './lost';
export * from './staleness';

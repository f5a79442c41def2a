/** The engine interfaces and their simulated implementations. */
export * from './types';
export * from './sim/clock';
export * from './sim/csv';
export * from './sim/environment';
export * from './sim/errors';
export * from './sim/gpuMemory';
export * from './sim/random';
export * from './sim/rolloutEngine';
export * from './sim/trainer';
export * from './sim/workload';

/** The engine interfaces and their simulated implementations. */
export * from './types';
export * from './simulated/clock';
export * from './simulated/csv';
export * from './simulated/environment';
export * from './simulated/errors';
export * from './simulated/gpuMemory';
export * from './simulated/random';
export * from './simulated/rolloutEngine';
export * from './simulated/trainer';
export * from './simulated/workload';

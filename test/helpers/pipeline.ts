/** The pipeline test environment lives in src/launch/localPipeline.ts (scripts use it too). */
export * from '../../src/launch/localPipeline';

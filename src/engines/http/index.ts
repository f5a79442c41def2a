/** HTTP adapters for real engines: SGLang, vLLM, and the trainer protocol. */
export * from './errors';
export * from './client';
export * from './sampling';
export * from './sglang';
export * from './vllm';
export * from './trainer';
export * from './broadcast';

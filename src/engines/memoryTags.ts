/**
 * GPU memory regions an inference engine can release and resume independently (vLLM/SGLang tags).
 * A module of its own, free of zod: the workflow bundle needs the tags, and every workflow it
 * creates evaluates the modules it imports (the engine schemas in ./types cost 10-35 ms each time).
 */
export const ALL_MEMORY_TAGS = ['weights', 'kv_cache'] as const;
export type MemoryTag = (typeof ALL_MEMORY_TAGS)[number];

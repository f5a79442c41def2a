/**
 * Benchmark: the reference RL run (examples/reference-rl.yaml) through the real pipeline on a
 * real Temporal dev server with reference engine processes on CPU; prints the mean reward of
 * each iteration's batch and the weight versions that generated it.
 *
 *   npx tsx scripts/reference-rl.ts [iterations=12] [seed=1] [sglang|vllm]
 */
import { startPipelineEnv } from '../src/launch/localPipeline';
import { runReferenceRl } from '../src/launch/referenceRl';

async function main(): Promise<void> {
  const iterations = Number(process.argv[2] ?? 12);
  const seed = Number(process.argv[3] ?? 1);
  const kind = (process.argv[4] ?? 'sglang') as 'sglang' | 'vllm';
  if (!Number.isInteger(iterations) || iterations < 1 || !Number.isInteger(seed) || !['sglang', 'vllm'].includes(kind)) {
    throw new Error('usage: npx tsx scripts/reference-rl.ts [iterations] [seed] [sglang|vllm]');
  }
  const env = await startPipelineEnv();
  try {
    const result = await runReferenceRl(env, { iterations, seed, kind });
    console.log(`reference RL (${kind} adapter, seed ${seed}): ${iterations} iterations in ${result.seconds.toFixed(1)} s`);
    console.log('iteration | mean reward | weight versions that generated the batch');
    result.rewardPerIteration.forEach((reward, i) => {
      console.log(`${String(i).padStart(9)} | ${reward.toFixed(3).padStart(11)} | ${(result.versionsPerIteration[i] ?? []).join(', ')}`);
    });
  } finally {
    await env.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

/**
 * Cost of the payload codec (docs/security.md §2): encode + decode time and size overhead for
 * payloads of the sizes a run's history carries (a rollout shard's input, an iteration's input
 * with its sample ledger, a large ledger). Prints a table; no assertions.
 *
 *   npx tsx scripts/bench-codec.ts
 */
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { AesGcmCodec } from '../src/temporal/codec';

function ledgerLike(samples: number): unknown {
  return {
    live: Array.from({ length: samples }, (_, id) => ({ id, startVersion: id % 3, state: 'running', rank: id % 8, shard: `0-a-${id % 8}-3` })),
    counters: { admitted: samples, batched: 0, dropped: {} },
  };
}

async function main(): Promise<void> {
  const codec = new AesGcmCodec('bench', randomBytes(32));
  const cases: Array<[string, unknown]> = [
    ['shard input (16 sample ids)', { runId: 'r', shardId: '0-a-3-1', rank: 3, sampleIds: Array.from({ length: 16 }, (_, i) => i), version: 1 }],
    ['iteration input, ledger of 512 samples', ledgerLike(512)],
    ['ledger of 8192 samples', ledgerLike(8192)],
  ];
  console.log('| payload | plaintext bytes | encrypted bytes | encode + decode per payload |');
  console.log('|---|---|---|---|');
  for (const [name, value] of cases) {
    const payload: Payload = defaultPayloadConverter.toPayload(value);
    const plainBytes = payload.data?.length ?? 0;
    const [encrypted] = await codec.encode([payload]);
    const rounds = plainBytes > 100_000 ? 200 : 2000;
    for (let i = 0; i < 50; i++) await codec.decode(await codec.encode([payload]));
    const start = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) await codec.decode(await codec.encode([payload]));
    const perRoundUs = Number(process.hrtime.bigint() - start) / 1000 / rounds;
    console.log(`| ${name} | ${plainBytes} | ${encrypted?.data?.length ?? 0} | ${perRoundUs.toFixed(1)} µs |`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

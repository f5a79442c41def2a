/** The KV capacity the pipeline's simulated engines report: the simulator's rank model's (src/workers/gpuNode.ts). */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRunConfig } from '../../src/config';
import { smallRunConfig } from '../../src/config/small';
import { rankCosts } from '../../src/simulator/config';
import { presetPath, readRawConfig } from '../../src/simulator/presets';
import { createSimulatedNodeEngines } from '../../src/workers/gpuNode';
import { runtimePaths } from '../../src/workers/runtime';

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-kv-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

async function reported(raw: Record<string, unknown>): Promise<(number | undefined)[]> {
  const parsed = parseRunConfig({ ...raw, store: { dir: path.join(stateDir, 'store') } }, '<test>');
  const context = { parsed, runId: 'kv', paths: runtimePaths(parsed.config, stateDir), temporal: { address: 'unused:7233', namespace: 'default' } };
  const { engines } = createSimulatedNodeEngines(context, 0);
  return Promise.all([...engines.values()].map((engine) => engine.kvCapacityTokens()));
}

describe('simulated engines report the KV capacity of the rank they model', () => {
  it("with simulation.hardware: the roofline's, as the simulator's ranks hold", async () => {
    const hardware = (readRawConfig(presetPath('dense-8b-h100')).simulation as { hardware: unknown }).hardware;
    const raw = smallRunConfig({ maxTokens: 16_384, simulation: { ...(smallRunConfig().simulation as object), hardware } });
    const expected = rankCosts(parseRunConfig(raw, '<test>')).rankModel.kvCapacityTokens;
    expect(Number.isSafeInteger(expected)).toBe(true);
    expect(await reported(raw)).toEqual([expected, expected, expected, expected]);
  });

  it('with the assumed-rate model: the declared simulation.costModel.kvCapacityTokensPerRank, else none', async () => {
    const declared = smallRunConfig({ maxTokens: 4096, simulation: { ...(smallRunConfig().simulation as object), costModel: { kvCapacityTokensPerRank: 4096 } } });
    expect(await reported(declared)).toEqual([4096, 4096, 4096, 4096]);
    expect(await reported(smallRunConfig())).toEqual([undefined, undefined, undefined, undefined]);
  });
});

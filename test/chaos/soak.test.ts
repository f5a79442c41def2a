/**
 * A short soak in the suite: the real harness (`timeshare chaos`) with its dev server and worker
 * processes, one fault of each of three kinds aimed at three phases; every invariant checked after
 * every iteration (engine hangs: test/engines/injection.test.ts and the full soak). The full soak (38 faults, every kind × phase pair) is `npm run soak`
 * (docs/reliability.md).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatReport, runChaos } from '../../src/chaos/harness';
import type { PlannedFault } from '../../src/chaos/schedule';

describe('short soak (real dev server, worker processes, injected faults)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-soak-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('survives an engine crash, a server kill and a gpu-node kill with every invariant holding', async () => {
    const plan: PlannedFault[] = [
      { index: 0, kind: 'engine-crash', phase: 'rollout', point: 0.5 },
      { index: 1, kind: 'server-kill', phase: 'train', point: 0.3 },
      { index: 2, kind: 'gpu-node-kill', phase: 'sync', point: 0.2 },
    ];
    const lines: string[] = [];
    const report = await runChaos({ faults: plan.length, seed: 0, plan, stateDir: path.join(dir, 'state'), deadlineMs: 150_000, log: (line) => lines.push(line) });
    const printed = formatReport(report);
    expect(report.invariantViolations, `${lines.join('\n')}\n${printed}`).toEqual([]);
    expect(report.samplesLost).toBe(0);
    expect(report.runCompleted).toBe(true);
    expect(report.iterationsDone).toBe(3);
    expect(report.faultsInjected).toBe(3);
    expect(report.faultsSurvived).toBe(3);
    expect(report.faults.map((fault) => `${fault.kind}@${fault.observedPhase}`)).toEqual(plan.map((fault) => `${fault.kind}@${fault.phase}`));
    expect(printed).toMatch(/invariant violations: {2}0/);
  }, 180_000);
});

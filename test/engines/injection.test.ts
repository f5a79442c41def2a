/** Faults injected into running engines: each fires once, only on the call it names, with its effect. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedEngineFault } from '../../src/engines/simulated/faults';
import { FaultInjector, firedFaults, injectableRolloutEngine, injectFault, pendingDir, releaseFault, withdrawPending } from '../../src/engines/simulated/injection';
import { SimRolloutEngine } from '../../src/engines/simulated/rolloutEngine';
import { clock, constantWorkload, cost, memory } from './helpers';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'timeshare-inject-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('fault injection into running engines', () => {
  it('an error fires once, on the named operation and rank only', async () => {
    const dir = tempDir();
    const injector = new FaultInjector(dir);
    injectFault(dir, { id: 'f1', target: 'rollout', operation: 'updateWeights', at: 2, kind: 'error' });
    await injector.before('rollout', 'updateWeights', 1); // other rank
    await injector.before('rollout', 'generate', 2); // other operation
    await expect(injector.before('rollout', 'updateWeights', 2)).rejects.toThrow(SimulatedEngineFault);
    await injector.before('rollout', 'updateWeights', 2); // fired already
    const fired = firedFaults(dir);
    expect([...fired.keys()]).toEqual(['f1']);
    expect(fired.get('f1')!.pid).toBe(process.pid);
  });

  it('a memory fault with a tag fires only on a call carrying that tag', async () => {
    const dir = tempDir();
    const injector = new FaultInjector(dir);
    injectFault(dir, { id: 'kv', target: 'rollout', operation: 'resumeMemory', tag: 'kv_cache', kind: 'error' });
    await injector.before('rollout', 'resumeMemory', 0, ['weights']);
    await expect(injector.before('rollout', 'resumeMemory', 0, ['kv_cache'])).rejects.toThrow(/injected fault kv/);
  });

  it('slow answers late; hang freezes the process (no timer runs meanwhile)', async () => {
    const dir = tempDir();
    const injector = new FaultInjector(dir);
    injectFault(dir, { id: 's', target: 'trainer', operation: 'trainStep', kind: 'slow', durationMs: 150 });
    let start = Date.now();
    await injector.before('trainer', 'trainStep', 0);
    expect(Date.now() - start).toBeGreaterThanOrEqual(140);

    injectFault(dir, { id: 'h', target: 'trainer', operation: 'onload', kind: 'hang', durationMs: 200 });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    start = Date.now();
    await injector.before('trainer', 'onload', 0);
    const frozenFor = Date.now() - start;
    const ticksDuringHang = ticks;
    clearInterval(timer);
    expect(frozenFor).toBeGreaterThanOrEqual(190);
    expect(ticksDuringHang).toBe(0);
  });

  it('a released slow fault answers at once: a held call waits for the release, not its duration', async () => {
    const dir = tempDir();
    const injector = new FaultInjector(dir);
    injectFault(dir, { id: 'held', target: 'trainer', operation: 'trainStep', kind: 'slow', durationMs: 600_000 });
    let answered = false;
    const call = injector.before('trainer', 'trainStep', 0).then(() => (answered = true));
    while (!firedFaults(dir).has('held')) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(answered).toBe(false);
    releaseFault(dir, 'held');
    await call; // within the test's timeout only if the release ended the 10-minute hold
    expect(answered).toBe(true);
    // Released before it fires: the call is not held at all.
    injectFault(dir, { id: 'pre', target: 'trainer', operation: 'onload', kind: 'slow', durationMs: 600_000 });
    releaseFault(dir, 'pre');
    await injector.before('trainer', 'onload', 0);
  });

  it('restart: the rollout engine comes back as a fresh process (base weights, all memory, no weight group) before the call, once', async () => {
    const dir = tempDir();
    const statePath = path.join(dir, 'rank-1.json');
    // An engine released to training, on v3, in weight group g1 (as its persisted state says).
    fs.writeFileSync(statePath, JSON.stringify({ weightVersion: 3, resident: [], weightGroup: 'g1' }));
    const gpuMemory = memory();
    const engine = new SimRolloutEngine({ rank: 1, gpus: [1], cost: cost(), workload: constantWorkload(10), clock: clock(1e-4), memory: gpuMemory, statePath });
    const injectable = injectableRolloutEngine(engine, new FaultInjector(dir), 1, () => engine.restart());
    injectFault(dir, { id: 'r', target: 'rollout', operation: 'resumeMemory', tag: 'weights', kind: 'restart', at: 1 });
    await injectable.resumeMemory(['kv_cache']); // no weights in the call: not this fault
    await injectable.releaseMemory(['kv_cache']);
    await injectable.resumeMemory(['weights']);
    expect(await injectable.status()).toEqual({ weightVersion: 0, resident: ['weights', 'kv_cache'], runningRequests: 0 });
    expect(JSON.parse(fs.readFileSync(statePath, 'utf8'))).toEqual({ weightVersion: 0, resident: ['weights', 'kv_cache'] });
    expect([...firedFaults(dir).keys()]).toEqual(['r']);
    // A restart fault is for rollout engines, and only for an engine the worker can restart.
    expect(() => injectFault(dir, { id: 't', target: 'trainer', operation: 'onload', kind: 'restart' })).toThrow(/rollout engines only/);
    injectFault(dir, { id: 'u', target: 'rollout', operation: 'generate', kind: 'restart' });
    await expect(new FaultInjector(dir).before('rollout', 'generate', 0)).rejects.toThrow(/cannot be restarted by the harness/);
  });

  it('rejects a bad fault and a second fault with the same id; a corrupt fault file names the file', async () => {
    const dir = tempDir();
    expect(() => injectFault(dir, { id: 'x', target: 'trainer', operation: 'generate', kind: 'error' })).toThrow(/does not belong/);
    expect(() => injectFault(dir, { id: 'x', target: 'rollout', operation: 'generate', kind: 'error', tag: 'weights' })).toThrow(/tag applies/);
    injectFault(dir, { id: 'x', target: 'rollout', operation: 'generate', kind: 'error' });
    expect(() => injectFault(dir, { id: 'x', target: 'rollout', operation: 'generate', kind: 'error' })).toThrow(/already injected/);
    fs.writeFileSync(path.join(pendingDir(dir), 'bad.json'), JSON.stringify({ id: 'bad', kind: 'melt' }));
    await expect(new FaultInjector(dir).before('rollout', 'generate', 0)).rejects.toThrow(/bad\.json is invalid/);
    expect(withdrawPending(dir).sort()).toEqual(['bad', 'x']);
  });
});

/**
 * The OpenEnv adapter against the real vault environment server (engines/openenv-env on
 * OpenEnv's server, a child process) and the reference engine's /tokenize and /detokenize:
 * episodes over WebSocket sessions, the tool-call action, the crash rule with a server process
 * killed mid-episode, a sample moving between ranks and workers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpenEnvEnvironment, EngineTokenizer, EpisodeLostError, FailoverTokenizer, OpenEnvEnvironment } from '../../../src/engines/openenv';
import { environmentTokenizer } from '../../../src/engines/openenv/index';
import { EngineHttpError } from '../../../src/engines/http';
import { tokenizerEndpoints } from '../../../src/workers/gpuNode';
import { startOpenEnvServer, type ServerProcess } from '../../../src/engines/openenv/launch';
import { startReferenceEngine, type ReferenceEngineProcess } from '../../../src/engines/reference/launch';
import { AGENT_MODEL_CONFIG, agentTokenizer, answerId, EOS, id, openEnvConfig } from './helpers';

/** An HTTP server answering every request with `status`, counting them: an engine restarting (503) or one that must not be asked. */
async function answering(status: number): Promise<{ url: string; calls: () => number; close: () => Promise<void> }> {
  let calls = 0;
  const server: Server = createServer((request, response) => {
    calls += 1;
    request.resume();
    response.writeHead(status, { 'Content-Type': 'text/plain' }).end(status === 503 ? 'engine restarting' : 'ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, calls: () => calls, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A URL nothing listens on (a port bound, then let go): an engine that crashed. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** Plays one sample's episode to the end, pressing right on the turns in `right`; returns each step. */
async function play(env: OpenEnvEnvironment, sampleId: number, right: (turn: number) => boolean, turns = 4) {
  const promptIds = await env.promptIds(sampleId);
  const outputs: number[][] = [];
  const observations: number[][] = [];
  let shown = promptIds.at(-1) as number;
  let last;
  for (let turn = 0; turn < turns; turn++) {
    const press = right(turn) ? answerId(shown) : (answerId(shown) + 1) % 10;
    outputs.push([press, EOS]);
    last = await env.step(sampleId, turn, 2, undefined, outputs, { promptIds, observationIds: observations });
    if (!last.done) {
      observations.push(last.observationIds ?? []);
      shown = last.observationIds?.at(-1) as number;
    }
  }
  return { promptIds, observations, last };
}

describe('OpenEnv episodes (real environment server)', () => {
  let servers: ServerProcess[] = [];
  let engine: ReferenceEngineProcess;
  beforeAll(async () => {
    const started = await Promise.allSettled([startOpenEnvServer(), startOpenEnvServer(), startReferenceEngine({ configPath: AGENT_MODEL_CONFIG, device: 'cpu', startTimeoutMs: 240_000 })]);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    servers = started.slice(0, 2).map((s) => (s as PromiseFulfilledResult<ServerProcess>).value);
    engine = (started[2] as PromiseFulfilledResult<ReferenceEngineProcess>).value;
  }, 300_000);
  afterAll(async () => {
    for (const server of servers) await server.stop();
    await engine?.stop();
  });

  it('plays an episode with the engine tokenizer: prompt, call_tool presses, observations, the verifiable reward', { timeout: 60_000 }, async () => {
    const tokenizer = new EngineTokenizer({ baseUrl: engine.url, kind: 'sglang' });
    const env = new OpenEnvEnvironment({ config: openEnvConfig([servers[0]!.url]), tokenizer });
    const allRight = await play(env, 7, () => true);
    expect(allRight.promptIds).toHaveLength(1);
    // Every observation says the press was right ('+') and shows the next digit.
    for (const obs of allRight.observations) {
      expect(obs).toHaveLength(2);
      expect(obs[0]).toBe(id('+'));
    }
    expect(allRight.last).toMatchObject({ done: true, reward: 1, observationIds: [] });
    const half = await play(env, 8, (turn) => turn % 2 === 0);
    expect(half.observations.map((o) => o[0])).toEqual([id('+'), id('-'), id('+')]);
    expect(half.last?.reward).toBe(0.5);
    // The same sample id gives the same episode (the seed derives from it): a fresh reset agrees.
    expect(await env.promptIds(7)).toEqual(allRight.promptIds);
    expect(env.liveEpisodes).toBe(0);
  });

  it('the tokenizer goes to the next rollout engine when one does not answer, and stays there; a 4xx is thrown at once', { timeout: 60_000 }, async () => {
    const crashed = await deadUrl();
    const restarting = await answering(503);
    const bystander = await answering(200);
    try {
      const config = openEnvConfig([servers[0]!.url], { tokenizer: { kind: 'engine' } });
      const rollout = { kind: 'sglang' as const };
      const reference = new EngineTokenizer({ baseUrl: engine.url, kind: 'sglang' });
      // A node's own engines first, then the other nodes' (each URL once).
      expect(tokenizerEndpoints(['http://a', 'http://b', 'http://c', 'http://b'], [2, 3])).toEqual(['http://c', 'http://b', 'http://a']);

      const failover = environmentTokenizer(config, rollout, [crashed, restarting.url, engine.url, engine.url]) as FailoverTokenizer;
      expect(failover).toBeInstanceOf(FailoverTokenizer);
      expect(await failover.encode('7?')).toEqual(await reference.encode('7?'));
      expect(restarting.calls()).toBe(1);
      expect(failover.current).toBe(engine.url);
      // Later calls start from the engine that answered: the restarting one is not asked again.
      expect(await failover.decode([id('4'), id('+'), EOS])).toBe('4+');
      expect(await failover.encode('12')).toEqual([id('1'), id('2')]);
      expect(restarting.calls()).toBe(1);

      // A text the model cannot tokenize is the text's fault: no other engine is asked.
      const first = environmentTokenizer(config, rollout, [engine.url, bystander.url]) as FailoverTokenizer;
      const refused = await first.encode('x').then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(EngineHttpError);
      expect((refused as EngineHttpError).status).toBe(400);
      expect(bystander.calls()).toBe(0);

      // None answers: the error names every engine and stays retryable (no status: no answer).
      const none = environmentTokenizer(config, rollout, [crashed, restarting.url]);
      const failed = await none.encode('1').then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failed).toBeInstanceOf(EngineHttpError);
      expect((failed as Error).message).toContain(crashed);
      expect((failed as Error).message).toContain(`${restarting.url}/tokenize: HTTP 503`);

      // An episode plays through with the first engine gone.
      const env = createOpenEnvEnvironment(config, rollout, [crashed, engine.url]);
      const played = await play(env, 11, () => true);
      expect(played.last).toMatchObject({ done: true, reward: 1 });
    } finally {
      await restarting.close();
      await bystander.close();
    }
  });

  it('a sample that moves to another rank of the worker keeps its session; one that moves to another worker is replayed', { timeout: 60_000 }, async () => {
    const config = openEnvConfig([servers[0]!.url]);
    const worker1 = new OpenEnvEnvironment({ config, tokenizer: agentTokenizer() });
    const promptIds = await worker1.promptIds(21);
    const shown0 = promptIds[0]!;
    const out0 = [answerId(shown0), EOS];
    const step0 = await worker1.step(21, 0, 2, undefined, [out0], { promptIds, observationIds: [] });
    expect(worker1.liveEpisodes).toBe(1);
    // Same worker, another rank: the same environment object, the same session (no replay needed even if not deterministic).
    const notReplaying = new OpenEnvEnvironment({ config: openEnvConfig([servers[0]!.url], { deterministic: false }), tokenizer: agentTokenizer() });
    const shown1 = step0.observationIds!.at(-1)!;
    const out1 = [answerId(shown1), EOS];
    const step1 = await worker1.step(21, 1, 2, undefined, [out0, out1], { promptIds, observationIds: [step0.observationIds!] });
    expect(step1.observationIds![0]).toBe(id('+'));
    // Another worker picks the sample up at turn 2: it re-creates the episode and replays turns 0-1.
    const worker2 = new OpenEnvEnvironment({ config, tokenizer: agentTokenizer() });
    const shown2 = step1.observationIds!.at(-1)!;
    const out2 = [(answerId(shown2) + 1) % 10, EOS];
    const history = { promptIds, observationIds: [step0.observationIds!, step1.observationIds!] };
    const step2 = await worker2.step(21, 2, 2, undefined, [out0, out1, out2], history);
    expect(step2.observationIds![0]).toBe(id('-'));
    // A worker whose environment is not declared deterministic ends the sample instead, with the counted reason.
    await expect(notReplaying.step(21, 2, 2, undefined, [out0, out1, out2], history)).rejects.toMatchObject({ name: 'EpisodeLostError', reason: 'environment-lost' });
    worker1.end(21);
    worker2.end(21);
    expect(worker1.liveEpisodes + worker2.liveEpisodes).toBe(0);
  });

  it('an environment server killed mid-episode: deterministic episodes are re-created elsewhere and replayed; others end counted', { timeout: 180_000 }, async () => {
    const doomed = await startOpenEnvServer();
    try {
      // The doomed server first (least busy wins ties), the surviving one second.
      const config = openEnvConfig([doomed.url, servers[1]!.url], { retries: 2 });
      const env = new OpenEnvEnvironment({ config, tokenizer: agentTokenizer(), retryDelayMs: 100 });
      const lossy = new OpenEnvEnvironment({ config: { ...config, deterministic: false }, tokenizer: agentTokenizer(), retryDelayMs: 100 });
      const run = async (e: OpenEnvEnvironment, sampleId: number) => {
        const promptIds = await e.promptIds(sampleId);
        const outs = [[answerId(promptIds[0]!), EOS]];
        const first = await e.step(sampleId, 0, 2, undefined, outs, { promptIds, observationIds: [] });
        return { promptIds, outs, first };
      };
      const a = await run(env, 31);
      const b = await run(lossy, 32);
      expect(env.liveEpisodes + lossy.liveEpisodes).toBe(2);
      await doomed.kill();
      // Turn 1 of each: the session is gone with the server.
      const outsA = [...a.outs, [answerId(a.first.observationIds!.at(-1)!), EOS]];
      const stepA = await env.step(31, 1, 2, undefined, outsA, { promptIds: a.promptIds, observationIds: [a.first.observationIds!] });
      // Replayed on the surviving server: turn 0's press was right, turn 1's too.
      expect(stepA.observationIds![0]).toBe(id('+'));
      const outsB = [...b.outs, [answerId(b.first.observationIds!.at(-1)!), EOS]];
      const lost = await lossy.step(32, 1, 2, undefined, outsB, { promptIds: b.promptIds, observationIds: [b.first.observationIds!] }).catch((error: unknown) => error);
      expect(lost).toBeInstanceOf(EpisodeLostError);
      expect((lost as EpisodeLostError).reason).toBe('environment-lost');
      // The replayed episode goes on to its end with the reward of every turn, the ones before the crash included.
      let outs = outsA;
      let observations = [a.first.observationIds!, stepA.observationIds!];
      let last = stepA;
      for (let turn = 2; turn < 4; turn++) {
        outs = [...outs, [answerId(last.observationIds!.at(-1)!), EOS]];
        last = await env.step(31, turn, 2, undefined, outs, { promptIds: a.promptIds, observationIds: observations });
        if (!last.done) observations = [...observations, last.observationIds!];
      }
      expect(last).toMatchObject({ done: true, reward: 1 });
    } finally {
      await doomed.stop();
    }
  });

  it('a server that holds fewer sessions than sessionsPerServer: episodes wait for a session (none dropped), the limit learned and logged', { timeout: 180_000 }, async () => {
    const narrow = await startOpenEnvServer({ maxSessions: 1 });
    try {
      const log: string[] = [];
      // The default sessionsPerServer (64) against OpenEnv's CAPACITY_REACHED at one session, and no retries to spend.
      const env = new OpenEnvEnvironment({ config: openEnvConfig([narrow.url], { retries: 0 }), tokenizer: agentTokenizer(), retryDelayMs: 50, log: (line) => log.push(line) });
      const results = await Promise.all([51, 52, 53].map((sample) => play(env, sample, () => true)));
      for (const result of results) expect(result.last).toMatchObject({ done: true, reward: 1 });
      expect(log).toEqual([expect.stringMatching(/holds at most 1 sessions \(CAPACITY_REACHED\), fewer than sessionsPerServer 64: .*set engine\.environment\.sessionsPerServer/)]);
      expect(env.liveEpisodes).toBe(0);
      // A second worker finds the server full with the first's session: it waits until that episode ends.
      const other = new OpenEnvEnvironment({ config: openEnvConfig([narrow.url], { retries: 0, sessionsPerServer: 1 }), tokenizer: agentTokenizer(), retryDelayMs: 50 });
      const prompt = await env.promptIds(61);
      const first = await env.step(61, 0, 2, undefined, [[answerId(prompt[0]!), EOS]], { promptIds: prompt, observationIds: [] });
      const waiting = play(other, 62, () => true);
      // Still waiting half a second later: the server holds the first worker's session.
      const stillWaiting = Symbol('still waiting');
      expect(await Promise.race([waiting, new Promise((resolve) => setTimeout(() => resolve(stillWaiting), 500))])).toBe(stillWaiting);
      expect(first.done).toBe(false);
      env.end(61);
      expect((await waiting).last).toMatchObject({ done: true, reward: 1 });
    } finally {
      await narrow.stop();
    }
  });

  it('a replay that does not reproduce the recorded observations ends the sample as environment-diverged', { timeout: 60_000 }, async () => {
    const env = new OpenEnvEnvironment({ config: openEnvConfig([servers[0]!.url]), tokenizer: agentTokenizer() });
    const promptIds = await env.promptIds(41);
    const outs = [[answerId(promptIds[0]!), EOS], [0, EOS]];
    // A recorded observation the environment would not give (a wrong press mark).
    const forged = [id('-'), id('0')];
    await expect(env.step(41, 1, 2, undefined, outs, { promptIds, observationIds: [forged] })).rejects.toMatchObject({ name: 'EpisodeLostError', reason: 'environment-diverged' });
    await expect(env.step(41, 0, 2, undefined, outs.slice(0, 1), { promptIds: [id('9'), id('9')], observationIds: [] })).rejects.toMatchObject({ reason: 'environment-diverged' });
    expect(env.liveEpisodes).toBe(0);
  });
});

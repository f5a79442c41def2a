/**
 * An OpenEnv environment server as the agent's environment (engine.environment.kind: openenv).
 *
 * One episode per sample: a WebSocket session (one environment instance on the server), reset
 * with a seed derived from the sample id, then one step per turn. The model's output ids are
 * decoded with the rollout engine's tokenizer into text, the text becomes an action
 * (./actions.ts); the observation's text is wrapped in the chat template and tokenized. The ids
 * the trainer sees are the generated ids as generated plus these observation ids: generated ids
 * are never re-tokenized.
 *
 * Episodes are addressed by sample, not by worker: every rank of this worker reaches the same
 * session, so a sample moved between them keeps its episode. A sample that arrives without a
 * live session here (it moved from another worker, or the worker, the server or the session
 * died) follows the crash rule: if the environment is declared deterministic, the episode is
 * re-created (same seed) and the recorded actions replayed, each answer checked against the
 * recorded ids; otherwise the sample ends with the counted reason `environment-lost`.
 * docs/engine-protocol.md ("Environment") states the rule.
 */
import type { OpenEnvEnvironmentConfig } from './config';
import type { AgentEnvironment, EnvironmentReset, EnvironmentStep, EpisodeHistory } from '../types';
import { buildAction, observationText, renderTemplate } from './actions';
import { keyRedactor } from '../auth';
import { describe } from '../http/client';
import { EnvironmentProtocolError, EnvironmentUnavailableError, EpisodeLostError, ServerAtCapacityError } from './errors';
import { stepResultSchema, type OpenEnvStepResult } from './protocol';
import { OpenEnvSession } from './session';
import type { SupervisedServer } from './supervisor';
import type { Tokenizer } from './tokenizer';
import { z } from 'zod';

export interface OpenEnvEnvironmentOptions {
  config: OpenEnvEnvironmentConfig;
  tokenizer: Tokenizer;
  apiKey?: string;
  now?: () => number;
  /** Pause between re-creations of a lost session (default 500 ms). */
  retryDelayMs?: number;
  /** The servers this worker runs itself, by index in config.servers (undefined: not supervised here). */
  supervised?: readonly (SupervisedServer | undefined)[];
  /** Warnings (a server that holds fewer sessions than sessionsPerServer). */
  log?: (line: string) => void;
}

interface Episode {
  sampleId: number;
  server: number;
  session: OpenEnvSession;
  /** Whether it still counts against its server's sessionsPerServer (released once, however the session ended). */
  holdsSlot: boolean;
  /** Turns applied (steps sent, or invalid tool calls answered without a step). */
  turns: number;
  rewards: number[];
  done: boolean;
  lastUsedMs: number;
  /**
   * The last turn's step answer (before its text is tokenized), kept so a turn stopped during its
   * step, or whose tokenizing failed, resumes with it instead of stepping twice.
   */
  last?: { turn: number; key: string; answer: Promise<TurnAnswer> };
}

/** What a turn's step answered: the episode's end and its reward, or the text of the next observation. */
type TurnAnswer = { done: true; reward: number } | { done: false; text: string };

const EXCERPT = 300;

/** A turn's failure before its step reached the server (its text could not be decoded): the turn may be tried again. */
class StepNotSent extends Error {
  constructor(readonly failure: unknown) {
    super(`the step was not sent: ${failure instanceof Error ? failure.message : String(failure)}`);
    this.name = 'StepNotSent';
  }
}

/** The error a caller sees: a failure before the step was sent is its own error, not the wrapper. */
function unwrapNotSent(error: unknown): unknown {
  return error instanceof StepNotSent ? error.failure : error;
}

/** A server whose session failed is given new sessions only when no other has a free one, for this long. */
export const FAILED_SERVER_AVOID_MS = 30_000;

export class OpenEnvEnvironment implements AgentEnvironment {
  private readonly config: OpenEnvEnvironmentConfig;
  private readonly episodes = new Map<number, Episode>();
  private readonly active: number[];
  /** Sessions this worker opens per server: sessionsPerServer, or less where a server said it holds less. */
  private readonly limit: number[];
  /** When a session on each server last failed (could not connect, or ended by itself); undefined: not recently. */
  private readonly failedAtMs: (number | undefined)[];
  private readonly waiting: (() => void)[] = [];
  private readonly now: () => number;
  /** Server text bound for an error, without the API key. */
  private readonly redact: (text: string) => string;

  constructor(private readonly options: OpenEnvEnvironmentOptions) {
    this.config = options.config;
    this.redact = keyRedactor(options.apiKey);
    this.active = options.config.servers.map(() => 0);
    this.limit = options.config.servers.map(() => options.config.sessionsPerServer);
    this.failedAtMs = options.config.servers.map(() => undefined);
    this.now = options.now ?? (() => Date.now());
  }

  /** The reset seed of a sample's episode: the same wherever and whenever it is re-created. */
  episodeSeed(sampleId: number): number {
    return (this.config.seed * 1_000_003 + sampleId) % 2_147_483_647;
  }

  /** Live episodes held by this worker (tests, status). */
  get liveEpisodes(): number {
    return [...this.episodes.values()].filter((e) => !e.session.closed).length;
  }

  /**
   * The prompt of a sample, from a stateless reset (HTTP POST /reset with the episode's seed):
   * the orchestrator records it at admission; the episode's session must reproduce it. Asked of
   * server `sampleId mod servers`, then of the next ones while a server does not answer (the seed
   * decides the prompt, and the episode's session checks it): one server down does not hold up
   * admission while another serves.
   */
  async promptIds(sampleId: number): Promise<number[]> {
    const count = this.config.servers.length;
    const failures: EnvironmentUnavailableError[] = [];
    for (let k = 0; k < count; k++) {
      const index = (sampleId + k) % count;
      try {
        return await this.promptIdsFrom(index, sampleId);
      } catch (error) {
        if (!(error instanceof EnvironmentUnavailableError)) throw error;
        failures.push(error);
      }
    }
    const [only] = failures;
    if (failures.length === 1 && only !== undefined) throw only;
    throw new EnvironmentUnavailableError(`OpenEnv reset of sample ${sampleId}`, `none of the ${count} servers answered: ${failures.map((e) => e.message).join('; ')}`);
  }

  private async promptIdsFrom(index: number, sampleId: number): Promise<number[]> {
    const server = this.config.servers[index];
    if (server === undefined) throw new Error(`openenv: no server ${index}`);
    await this.options.supervised?.[index]?.ready();
    const url = `${server.url.replace(/\/+$/, '')}/reset`;
    const where = `OpenEnv POST ${url}`;
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(this.options.apiKey === undefined ? {} : { Authorization: `Bearer ${this.options.apiKey}` }) },
        body: JSON.stringify(this.resetData(sampleId)),
        signal: AbortSignal.timeout(this.config.timeouts.resetSeconds * 1000),
      });
      // The body too: a server that dies or stalls mid-answer gave no answer.
      text = await response.text();
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new EnvironmentUnavailableError(where, timedOut ? `no answer within ${this.config.timeouts.resetSeconds} s (timeouts.resetSeconds)` : `no answer: ${describe(error)}`);
    }
    // Only for an error (a reset's body may be large), redacted before it is cut: a cut could split the key.
    const excerpt = (): string => this.redact(text).slice(0, EXCERPT);
    if (response.status >= 500) throw new EnvironmentUnavailableError(where, `HTTP ${response.status}: ${excerpt()}`);
    if (!response.ok) throw new EnvironmentProtocolError(where, `HTTP ${response.status}: ${excerpt()}`);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new EnvironmentProtocolError(where, `expected JSON, got ${JSON.stringify(excerpt())}`);
    }
    const parsed = stepResultSchema.safeParse(value);
    if (!parsed.success) throw new EnvironmentProtocolError(where, `malformed reset answer: ${this.redact(z.prettifyError(parsed.error).replace(/\n/g, '; '))}`);
    return this.promptOf(parsed.data, where);
  }

  async reset(sampleId: number): Promise<EnvironmentReset> {
    const promptIds = await this.promptIds(sampleId);
    return { promptTokens: promptIds.length, promptIds };
  }

  async step(
    sampleId: number,
    turn: number,
    generatedTokens: number,
    signal?: AbortSignal,
    outputIds?: readonly (readonly number[])[],
    history?: EpisodeHistory,
  ): Promise<EnvironmentStep> {
    signal?.throwIfAborted();
    if (outputIds?.length !== turn + 1) {
      throw new Error(`openenv: sample ${sampleId} turn ${turn} needs the output ids of turns 0..${turn}, got ${outputIds?.length ?? 'none'}`);
    }
    const current = outputIds[turn] ?? [];
    if (current.length !== generatedTokens) throw new Error(`openenv: sample ${sampleId} turn ${turn}: ${generatedTokens} generated tokens but ${current.length} ids`);
    const key = JSON.stringify(current);
    this.reapIdle();
    const live = this.episodes.get(sampleId);
    const kept = live?.last?.turn === turn && live.last.key === key ? live.last : undefined;
    if (live !== undefined && kept !== undefined) {
      let answer: TurnAnswer | undefined;
      try {
        answer = await abortable(kept.answer, signal);
      } catch (error) {
        if (signal?.aborted === true) throw unwrapNotSent(error);
        // The kept step failed. Its session died: the turn is retried below like any lost session.
        // It failed before its step was sent (the tokenizer, its engine restarting): forgotten, so
        // the turn is tried again below instead of answered with the same failure. Anything after
        // the step was sent (a malformed answer, a server error) stands: trying again would step twice.
        if (error instanceof EnvironmentUnavailableError) this.end(sampleId);
        else if (error instanceof StepNotSent) live.last = undefined;
        else throw error;
      }
      if (answer !== undefined) return await this.observe(answer);
    }
    for (let attempt = 0; ; ) {
      try {
        const episode = await this.episodeAt(sampleId, turn, outputIds, history, signal);
        const answer = this.stepTurn(episode, turn, current);
        episode.last = { turn, key, answer };
        // Stopped mid-step, the answer still lands on the episode for the resumed turn to take.
        answer.catch(() => undefined);
        return await this.observe(await abortable(answer, signal));
      } catch (error) {
        if (!(error instanceof EnvironmentUnavailableError) || signal?.aborted === true) throw unwrapNotSent(error);
        this.end(sampleId);
        // A server at its session limit is backpressure: the episode waits for a session, spending no retry.
        if (!(error instanceof ServerAtCapacityError) && attempt++ >= this.config.retries) {
          throw new EpisodeLostError(sampleId, 'environment-unavailable', `${this.config.retries + 1} sessions failed: ${error.message}`);
        }
        await delay(this.options.retryDelayMs ?? 500, signal);
      }
    }
  }

  /** Frees the sample's episode (its session and server slot). Idempotent. */
  end(sampleId: number): void {
    const episode = this.episodes.get(sampleId);
    if (episode === undefined) return;
    this.episodes.delete(sampleId);
    this.closeSession(episode);
  }

  /** Ends every episode (worker shutdown). */
  close(): void {
    for (const id of [...this.episodes.keys()]) this.end(id);
  }

  /** The servers this worker runs (tests, status). */
  supervisedServers(): SupervisedServer[] {
    return (this.options.supervised ?? []).filter((s): s is SupervisedServer => s !== undefined);
  }

  /** Stops the servers this worker runs. */
  async stopServers(): Promise<void> {
    for (const server of this.supervisedServers()) await server.stop();
  }

  /** The live episode at `turn`, or a new one: opened, reset and (deterministic) replayed to `turn`. */
  private async episodeAt(sampleId: number, turn: number, outputIds: readonly (readonly number[])[], history: EpisodeHistory | undefined, signal?: AbortSignal): Promise<Episode> {
    const live = this.episodes.get(sampleId);
    if (live !== undefined && !live.session.closed && !live.done && live.turns === turn) return live;
    if (live !== undefined) this.end(sampleId);
    if (turn > 0 && !this.config.deterministic) {
      throw new EpisodeLostError(
        sampleId,
        'environment-lost',
        `no live session for turn ${turn} on this worker (its session, server or worker was lost, or it moved here) and the environment is not declared deterministic, so it is not replayed`,
      );
    }
    const server = await this.acquireServer(signal);
    let session: OpenEnvSession;
    try {
      await this.options.supervised?.[server]?.ready();
      session = await OpenEnvSession.open({
        serverUrl: this.serverUrl(server),
        connectTimeoutMs: this.config.timeouts.connectSeconds * 1000,
        ...(this.options.apiKey === undefined ? {} : { apiKey: this.options.apiKey }),
      });
    } catch (error) {
      if (error instanceof EnvironmentUnavailableError) this.failedAtMs[server] = this.now();
      this.releaseServer(server);
      throw error;
    }
    const episode: Episode = { sampleId, server, session, holdsSlot: true, turns: 0, rewards: [], done: false, lastUsedMs: this.now() };
    this.episodes.set(sampleId, episode);
    try {
      const reset = await session.reset(this.resetData(sampleId), this.config.timeouts.resetSeconds * 1000);
      const promptIds = await this.promptOf(reset, session.where);
      if (history !== undefined && !sameIds(promptIds, history.promptIds)) {
        throw new EpisodeLostError(sampleId, 'environment-diverged', `the session's reset (seed ${this.episodeSeed(sampleId)}) gave other prompt ids than recorded: ${excerpt(promptIds)} vs ${excerpt(history.promptIds)}`);
      }
      for (let t = 0; t < turn; t++) {
        const step = await this.applyTurn(episode, t, outputIds[t] ?? []);
        const recorded = history?.observationIds[t];
        if (step.done || (recorded !== undefined && !sameIds(step.observationIds ?? [], recorded))) {
          throw new EpisodeLostError(
            sampleId,
            'environment-diverged',
            `replaying turn ${t} ${step.done ? 'ended the episode' : `gave observation ${excerpt(step.observationIds ?? [])}, recorded ${excerpt(recorded ?? [])}`}`,
          );
        }
      }
    } catch (error) {
      if (error instanceof ServerAtCapacityError) this.lowerLimit(server, error);
      // An episode not reset and replayed to `turn` must not be taken as live by the next attempt
      // (it would step on without the reset's checks) nor hold its server slot until it idles out.
      if (this.episodes.get(sampleId) === episode) this.end(sampleId);
      throw error;
    }
    return episode;
  }

  /** One turn: the output ids → text → action → step → observation ids (or the end and its reward). */
  private async applyTurn(episode: Episode, turn: number, ids: readonly number[]): Promise<EnvironmentStep> {
    return this.observe(await this.stepTurn(episode, turn, ids));
  }

  /** The observation's ids (the chat template around its text), or the end. */
  private async observe(answer: TurnAnswer): Promise<EnvironmentStep> {
    if (answer.done) return { observationTokens: 0, observationIds: [], done: true, reward: answer.reward };
    const observationIds = await this.options.tokenizer.encode(renderTemplate(this.config.chatTemplate.observation, answer.text));
    return { observationTokens: observationIds.length, observationIds, done: false };
  }

  /** A turn on the episode: the output ids → text → action → step → its answer (the episode advances). */
  private async stepTurn(episode: Episode, turn: number, ids: readonly number[]): Promise<TurnAnswer> {
    let text: string;
    try {
      text = await this.options.tokenizer.decode(ids);
    } catch (error) {
      throw new StepNotSent(error);
    }
    const built = buildAction(text, this.config.toolCall);
    let answerText: string | undefined;
    let reward = 0;
    let done = false;
    if ('invalid' in built) {
      answerText = `invalid tool call: ${built.invalid}`;
    } else {
      let result: OpenEnvStepResult;
      try {
        result = await episode.session.step(built.action, this.config.timeouts.stepSeconds * 1000);
      } catch (error) {
        // The server refused the action (its schema): the model's mistake, answered as an observation.
        if (!(error instanceof EnvironmentProtocolError) || error.code !== 'VALIDATION_ERROR') throw error;
        result = { observation: { error: error.message }, done: false, reward: 0 };
        answerText = `invalid action: ${error.message}`;
      }
      reward = result.reward ?? 0;
      done = result.done;
      answerText ??= observationText(result.observation, this.config.observationField, episode.session.where);
    }
    episode.turns = turn + 1;
    episode.rewards.push(reward);
    episode.lastUsedMs = this.now();
    if (done || (this.config.maxSteps !== undefined && turn + 1 >= this.config.maxSteps)) {
      episode.done = true;
      this.closeSession(episode);
      const total = this.config.reward === 'sum' ? episode.rewards.reduce((a, b) => a + b, 0) : reward;
      return { done: true, reward: total };
    }
    return { done: false, text: answerText ?? '' };
  }

  private async promptOf(reset: OpenEnvStepResult, where: string): Promise<number[]> {
    if (reset.done) throw new EnvironmentProtocolError(where, 'the reset answered done: an episode must start not done');
    const text = observationText(reset.observation, this.config.observationField, where);
    const ids = await this.options.tokenizer.encode(renderTemplate(this.config.chatTemplate.prompt, text));
    if (ids.length === 0) throw new EnvironmentProtocolError(where, 'the reset observation renders to no tokens: a prompt needs at least one');
    return ids;
  }

  private resetData(sampleId: number): Record<string, unknown> {
    return { seed: this.episodeSeed(sampleId), episode_id: `sample-${sampleId}` };
  }

  private serverUrl(server: number): string {
    const config = this.config.servers[server];
    if (config === undefined) throw new Error(`openenv: no server ${server}`);
    return config.url;
  }

  /**
   * The least busy server with a free session, waiting for one when all are full. A server whose
   * session failed within FAILED_SERVER_AVOID_MS is taken only when no other has a free session:
   * a server that is down holds no sessions, so by load alone it would win every retry.
   */
  private async acquireServer(signal?: AbortSignal): Promise<number> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.now();
      const rank = (server: number): [number, number] => {
        const failedAt = this.failedAtMs[server];
        return [failedAt !== undefined && now - failedAt < FAILED_SERVER_AVOID_MS ? 1 : 0, this.active[server] ?? 0];
      };
      let best = -1;
      this.active.forEach((count, server) => {
        if (count >= (this.limit[server] ?? 0)) return;
        const [failed, load] = rank(server);
        const [bestFailed, bestLoad] = best < 0 ? [Infinity, Infinity] : rank(best);
        if (failed < bestFailed || (failed === bestFailed && load < bestLoad)) best = server;
      });
      if (best >= 0) {
        this.active[best] = (this.active[best] ?? 0) + 1;
        return best;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.waiting.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  /** A server refused a session at its limit: this worker opens no more there than the limit it reported. */
  private lowerLimit(server: number, error: ServerAtCapacityError): void {
    const current = this.limit[server] ?? 0;
    if (error.maxSessions === undefined || error.maxSessions >= current) return;
    this.limit[server] = error.maxSessions;
    this.options.log?.(
      `OpenEnv server ${this.serverUrl(server)} holds at most ${error.maxSessions} sessions (CAPACITY_REACHED), fewer than sessionsPerServer ${this.config.sessionsPerServer}: this worker opens at most ${error.maxSessions} there, and more episodes wait for one; set engine.environment.sessionsPerServer to the server's limit divided by the gpu-node workers (or raise the server's max_concurrent_envs)`,
    );
  }

  private releaseServer(server: number): void {
    this.active[server] = Math.max(0, (this.active[server] ?? 0) - 1);
    // Every waiter looks again (one woken by its abort has left; waking all loses no free slot).
    for (const wake of this.waiting.splice(0)) wake();
  }

  /**
   * Closes the episode's session and frees its server slot. The slot is released even when the
   * session had already ended by itself (the server closed it, a timeout, a malformed answer):
   * otherwise every such failure would hold a slot for good, and once `sessionsPerServer` had
   * failed, every new episode would wait for a free session forever. Idempotent.
   */
  private closeSession(episode: Episode): void {
    if (!episode.holdsSlot) return;
    // A session that ended by itself failed (its server closed it, a timeout, a malformed answer).
    if (episode.session.closed && !episode.done) this.failedAtMs[episode.server] = this.now();
    episode.session.close();
    episode.holdsSlot = false;
    this.releaseServer(episode.server);
  }

  /** Episodes no turn touched for idleSeconds went elsewhere (their sample moved or ended): free them. */
  private reapIdle(): void {
    const cutoff = this.now() - this.config.timeouts.idleSeconds * 1000;
    for (const [id, episode] of this.episodes) if (episode.lastUsedMs < cutoff) this.end(id);
  }
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

function excerpt(ids: readonly number[]): string {
  return ids.length <= 12 ? `[${ids.join(',')}]` : `[${ids.slice(0, 12).join(',')},… ${ids.length} ids]`;
}

/** Rejects when `signal` aborts; the promise itself runs on. */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    }, { once: true });
  });
}

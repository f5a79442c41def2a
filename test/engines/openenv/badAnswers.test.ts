/**
 * Bad environment answers: a misbehaving server (a WebSocket and HTTP server in this process that
 * answers as told) in front of the OpenEnv adapter. Malformed JSON and wrong schemas are
 * EnvironmentProtocolError (non-retryable, src/contract/errors.ts); HTTP 5xx, a hanging step
 * and a closed WebSocket are EnvironmentUnavailableError, retried on a new session up to
 * `retries`, then the sample ends as environment-unavailable (counted); nothing is lost.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { EnvironmentProtocolError, EnvironmentUnavailableError, EpisodeLostError, OpenEnvEnvironment } from '../../../src/engines/openenv';
import { NON_RETRYABLE_ERROR_TYPES } from '../../../src/contract/errors';
import { agentTokenizer, EOS, id, openEnvConfig } from './helpers';

type Behaviour = (message: { type: string; data?: unknown }, socket: WebSocket) => void;

const good = (text: string) => JSON.stringify({ type: 'observation', data: { observation: { text }, reward: 0, done: false } });

/** A server whose /reset answers `reset` and whose sessions answer per `behaviour`. */
async function misbehaving(
  behaviour: Behaviour,
  reset: (res: import('node:http').ServerResponse) => void = (res) => res.end(JSON.stringify({ observation: { text: '5' }, reward: 0, done: false })),
  onConnect: (socket: WebSocket, opened: number) => void = () => undefined,
) {
  const sessions = { opened: 0 };
  const http: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => reset(res));
  });
  const wss = new WebSocketServer({ server: http, path: '/ws' });
  wss.on('connection', (socket) => {
    sessions.opened++;
    socket.on('message', (raw) => behaviour(JSON.parse(String(raw)) as { type: string }, socket));
    onConnect(socket, sessions.opened);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return {
    url,
    sessions,
    close: async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

async function server(behaviour: Behaviour, reset?: (res: import('node:http').ServerResponse) => void) {
  const s = await misbehaving(behaviour, reset);
  closers.push(s.close);
  return s;
}

function environment(url: string, overrides: Record<string, unknown> = {}) {
  return new OpenEnvEnvironment({ config: openEnvConfig([url], { retries: 1, timeouts: { stepSeconds: 0.5, resetSeconds: 2 }, ...overrides }), tokenizer: agentTokenizer(), retryDelayMs: 10 });
}

const promptIds = [id('5')];
const turn0 = [[id('8'), EOS]];

describe('bad environment answers', () => {
  it('a malformed JSON answer is a non-retryable EnvironmentProtocolError naming the session', async () => {
    const s = await server((message, socket) => socket.send(message.type === 'reset' ? good('5') : '{not json'));
    const error = await environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvironmentProtocolError);
    expect(String(error)).toMatch(/OpenEnv session ws:\/\/127\.0\.0\.1:\d+\/ws: expected a JSON message, got "\{not json"/);
    expect(NON_RETRYABLE_ERROR_TYPES).toContain((error as Error).name);
  });

  it('an answer of the wrong schema is an EnvironmentProtocolError that says what is wrong', async () => {
    const s = await server((message, socket) => socket.send(message.type === 'reset' ? good('5') : JSON.stringify({ type: 'observation', data: { observation: 'text', done: 'no' } })));
    const error = await environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvironmentProtocolError);
    expect(String(error)).toMatch(/malformed answer: .*observation/);
  });

  it('an observation without the configured text field is an EnvironmentProtocolError listing the fields', async () => {
    const s = await server((message, socket) => socket.send(message.type === 'reset' ? good('5') : JSON.stringify({ type: 'observation', data: { observation: { board: 'x' }, reward: 0, done: false } })));
    await expect(environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] })).rejects.toThrow(/no text field "text" \(fields: board\)/);
  });

  it('a hanging step times out, is retried on a new session, then ends the sample as environment-unavailable', async () => {
    const s = await server((message, socket) => {
      if (message.type === 'reset') socket.send(good('5'));
      // step: never answers
    });
    const error = await environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EpisodeLostError);
    expect((error as EpisodeLostError).reason).toBe('environment-unavailable');
    expect(String(error)).toMatch(/2 sessions failed: .*step had no answer within 500 ms/);
    expect(s.sessions.opened).toBe(2);
  });

  it('a WebSocket closed mid-step is retried on a new session, and the turn goes on when the server answers', async () => {
    let steps = 0;
    const s = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      if (++steps === 1) return socket.close(1011, 'crashed');
      socket.send(good('+1'));
    });
    const step = await environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] });
    expect(step.observationIds).toEqual([id('+'), id('1')]);
    expect(s.sessions.opened).toBe(2);
  });

  it('a session the server closed frees its server slot: with one session per server the retry gets it, and so does the next sample', async () => {
    let steps = 0;
    const s = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      if (message.type !== 'step') return;
      // Every other step crashes its session (the server closes the WebSocket).
      if (++steps % 2 === 1) return socket.close(1011, 'crashed');
      socket.send(good('+1'));
    });
    const env = environment(s.url, { sessionsPerServer: 1 });
    const hung = new Promise<string>((resolve) => setTimeout(() => resolve('no free session: the closed session still holds its slot'), 5000).unref());
    for (const sample of [1, 2]) {
      const step = await Promise.race([env.step(sample, 0, 2, undefined, turn0, { promptIds, observationIds: [] }), hung]);
      expect(step).toMatchObject({ observationIds: [id('+'), id('1')] });
      env.end(sample);
    }
    expect(s.sessions.opened).toBe(4);
    env.close();
  });

  it('a server at its session limit that says so unasked, on connecting (as OpenEnv does): the episode waits for a session, none dropped, no retry spent', async () => {
    const s = await misbehaving(
      (message, socket) => {
        if (message.type === 'reset') return socket.send(good('5'));
        if (message.type === 'step') socket.send(good('+1'));
      },
      undefined,
      (socket, opened) => {
        // The first session is refused before any request: the server holds its one session elsewhere.
        if (opened === 1) {
          socket.send(JSON.stringify({ type: 'error', data: { code: 'CAPACITY_REACHED', message: 'at capacity', max_sessions: 1 } }));
          socket.close();
        }
      },
    );
    closers.push(s.close);
    const env = environment(s.url, { retries: 0 });
    const step = await env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] });
    expect(step).toMatchObject({ observationIds: [id('+'), id('1')] });
    expect(s.sessions.opened).toBe(2);
    env.close();
  });

  it('an episode whose reset failed is not kept: no slot held, and the next attempt resets a new session instead of stepping on it', async () => {
    let resets = 0;
    const steps: string[] = [];
    const s = await server((message, socket) => {
      if (message.type === 'reset') {
        // The first reset answers done (a protocol error); later ones are good.
        if (++resets === 1) return socket.send(JSON.stringify({ type: 'observation', data: { observation: { text: '5' }, reward: 0, done: true } }));
        return socket.send(good('5'));
      }
      if (message.type === 'step') {
        steps.push(`session ${s.sessions.opened}`);
        socket.send(good('+1'));
      }
    });
    const env = environment(s.url);
    await expect(env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] })).rejects.toThrow(/the reset answered done/);
    expect(env.liveEpisodes).toBe(0);
    const step = await env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] });
    expect(step.observationIds).toEqual([id('+'), id('1')]);
    expect(resets).toBe(2);
    expect(steps).toEqual(['session 2']);
    env.close();
  });

  it('an error message from the server for a well-formed request is an EnvironmentProtocolError with its code', async () => {
    const s = await server((message, socket) =>
      socket.send(message.type === 'reset' ? good('5') : JSON.stringify({ type: 'error', data: { message: 'boom', code: 'EXECUTION_ERROR' } })),
    );
    await expect(environment(s.url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] })).rejects.toMatchObject({ name: 'EnvironmentProtocolError', code: 'EXECUTION_ERROR' });
  });

  it('an action the server refuses (VALIDATION_ERROR) is the model mistake: answered as an observation, the episode goes on', async () => {
    const s = await server((message, socket) =>
      socket.send(message.type === 'reset' ? good('5') : JSON.stringify({ type: 'error', data: { message: 'Invalid message', code: 'VALIDATION_ERROR' } })),
    );
    // A byte tokenizer (the agent vocabulary cannot spell the refusal): the observation is the refusal's text.
    const bytes = { encode: async (text: string) => [...Buffer.from(text)], decode: async (ids: readonly number[]) => Buffer.from([...ids]).toString() };
    const env = new OpenEnvEnvironment({ config: openEnvConfig([s.url], { observationField: 'text' }), tokenizer: bytes });
    const step = await env.step(1, 0, 1, undefined, [[...Buffer.from('7')]], { promptIds: [...Buffer.from('5')], observationIds: [] });
    expect(step.done).toBe(false);
    expect(await bytes.decode(step.observationIds ?? [])).toMatch(/^invalid action: .*server error VALIDATION_ERROR: Invalid message$/);
    expect(env.liveEpisodes).toBe(1);
    env.close();
  });

  it('HTTP 5xx on the stateless reset is retryable (unavailable); 4xx and malformed bodies are protocol errors', async () => {
    const s5 = await server(() => undefined, (res) => {
      res.statusCode = 503;
      res.end('overloaded');
    });
    await expect(environment(s5.url).promptIds(3)).rejects.toBeInstanceOf(EnvironmentUnavailableError);
    expect(NON_RETRYABLE_ERROR_TYPES).not.toContain('EnvironmentUnavailableError');
    const s4 = await server(() => undefined, (res) => {
      res.statusCode = 422;
      res.end('{"detail":"bad seed"}');
    });
    await expect(environment(s4.url).promptIds(3)).rejects.toThrow(/HTTP 422: \{"detail":"bad seed"\}/);
    const bad = await server(() => undefined, (res) => res.end('<html>'));
    await expect(environment(bad.url).promptIds(3)).rejects.toThrow(/expected JSON, got "<html>"/);
  });

  it('the API key a server echoes back (raw or JSON-escaped) reaches no error', async () => {
    const key = 'sk-"echoed"\\key';
    const echo = (authorization: string | undefined) => JSON.stringify({ detail: `bad credentials: ${authorization}`, raw: authorization });
    const http: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = 401;
        res.end(echo(req.headers.authorization));
      });
    });
    const wss = new WebSocketServer({ server: http, path: '/ws' });
    wss.on('connection', (socket, req) => {
      socket.on('message', () => socket.send(JSON.stringify({ type: 'error', data: { message: `denied for ${req.headers.authorization}`, code: 'EXECUTION_ERROR' } })));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    closers.push(async () => {
      for (const client of wss.clients) client.terminate();
      wss.close();
      await new Promise((resolve) => http.close(resolve));
    });
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const env = new OpenEnvEnvironment({ config: openEnvConfig([url], { retries: 0 }), tokenizer: agentTokenizer(), apiKey: key, retryDelayMs: 10 });
    const escaped = JSON.stringify(key).slice(1, -1);
    const resetError = String(await env.promptIds(3).catch((e: unknown) => e));
    const stepError = String(await env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] }).catch((e: unknown) => e));
    for (const message of [resetError, stepError]) {
      expect(message).toContain('[redacted]');
      expect(message).not.toContain(key);
      expect(message).not.toContain(escaped);
    }
    expect(resetError).toMatch(/HTTP 401: .*bad credentials: Bearer \[redacted\]/);
    expect(stepError).toMatch(/server error EXECUTION_ERROR: denied for Bearer \[redacted\]/);
    env.close();
  });

  it('a turn whose tokenizer call failed (the rollout engine restarting) is tried again, not answered with the kept failure', async () => {
    let steps = 0;
    const s = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      if (message.type === 'step') {
        steps++;
        socket.send(good('+1'));
      }
    });
    const vocabulary = agentTokenizer();
    // /detokenize fails once, then /tokenize once (after the step was sent), then both work.
    const failures = { decode: 1, encode: 2 };
    const flaky = {
      decode: async (ids: readonly number[]) => {
        if (failures.decode-- > 0) throw new Error('POST http://engine/detokenize: no response: connect ECONNREFUSED');
        return vocabulary.decode(ids);
      },
      encode: async (text: string) => {
        // The first encode is the prompt's (reset); the turn's observation fails once.
        if (--failures.encode === 0) throw new Error('POST http://engine/tokenize: no response: connect ECONNREFUSED');
        return vocabulary.encode(text);
      },
    };
    const env = new OpenEnvEnvironment({ config: openEnvConfig([s.url], { deterministic: false }), tokenizer: flaky, retryDelayMs: 10 });
    const history = { promptIds, observationIds: [] };
    await expect(env.step(1, 0, 2, undefined, turn0, history)).rejects.toThrow(/detokenize/);
    expect(steps).toBe(0);
    await expect(env.step(1, 0, 2, undefined, turn0, history)).rejects.toThrow(/\/tokenize/);
    expect(steps).toBe(1);
    // The step's answer was kept: the retry only tokenizes it, without stepping twice (or losing the episode).
    const step = await env.step(1, 0, 2, undefined, turn0, history);
    expect(step.observationIds).toEqual([id('+'), id('1')]);
    expect(steps).toBe(1);
    expect(s.sessions.opened).toBe(1);
    env.close();
  });

  it('a turn whose answer failed after its step was sent fails again as it did, without a second step', async () => {
    let steps = 0;
    const s = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      if (message.type === 'step') {
        steps++;
        // No `text` field: the configured observation field is missing once the server has stepped.
        socket.send(JSON.stringify({ type: 'observation', data: { observation: { other: 1 }, reward: 0, done: false } }));
      }
    });
    const env = environment(s.url);
    const history = { promptIds, observationIds: [] };
    for (let call = 0; call < 2; call++) {
      const failure = await env.step(1, 0, 2, undefined, turn0, history).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(EnvironmentProtocolError);
      expect(String(failure)).toMatch(/no text field "text"/);
    }
    expect(steps).toBe(1);
    env.close();
  });

  it('a turn stopped during its step resumes with the kept answer: the environment steps once', async () => {
    let steps = 0;
    const s = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      steps++;
      setTimeout(() => socket.send(good('+1')), 300);
    });
    const env = environment(s.url, { timeouts: { stepSeconds: 5 } });
    const stop = new AbortController();
    setTimeout(() => stop.abort(new Error('shard stopped')), 50);
    await expect(env.step(1, 0, 2, stop.signal, turn0, { promptIds, observationIds: [] })).rejects.toThrow(/shard stopped/);
    const resumed = await env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] });
    expect(resumed.observationIds).toEqual([id('+'), id('1')]);
    expect(steps).toBe(1);
    expect(s.sessions.opened).toBe(1);
    env.close();
  });

  it('a server that is down is not tried again while another has a free session: the retry goes elsewhere', async () => {
    const down = await server(() => undefined);
    await closers.pop()?.();
    const up = await server((message, socket) => {
      if (message.type === 'reset') return socket.send(good('5'));
      if (message.type === 'step') socket.send(good('+1'));
    });
    // The server that is down comes first: the least busy (both idle), so it is tried first.
    const env = new OpenEnvEnvironment({ config: openEnvConfig([down.url, up.url], { retries: 1 }), tokenizer: agentTokenizer(), retryDelayMs: 10 });
    for (const sample of [1, 2, 3]) {
      const step = await env.step(sample, 0, 2, undefined, turn0, { promptIds, observationIds: [] });
      expect(step.observationIds).toEqual([id('+'), id('1')]);
      env.end(sample);
    }
    expect(up.sessions.opened).toBe(3);
    env.close();
  });

  it("the orchestrator's reset asks the next server when a sample's own server is down, and says why when none answers", async () => {
    const down = await server(() => undefined);
    await closers.pop()?.();
    const up = await server(() => undefined);
    const both = environment(down.url, { servers: [{ url: up.url }, { url: down.url }] });
    // Sample 1's server (1 mod 2) is the one that is down; the other answers with the same seed.
    expect(await both.promptIds(1)).toEqual([id('5')]);
    const none = environment(down.url, { servers: [{ url: down.url }, { url: down.url }] });
    const error = await none.promptIds(1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvironmentUnavailableError);
    expect(String(error)).toMatch(/OpenEnv reset of sample 1: none of the 2 servers answered: .*no answer: fetch failed \(connect ECONNREFUSED/);
  });

  it('a reset slower than timeouts.resetSeconds is unavailable and names the setting', async () => {
    const slow = await server(() => undefined, (res) => void setTimeout(() => res.end(JSON.stringify({ observation: { text: '5' }, done: false })), 1500));
    const error = await environment(slow.url, { timeouts: { resetSeconds: 0.2 } }).promptIds(3).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvironmentUnavailableError);
    expect(String(error)).toMatch(/no answer within 0\.2 s \(timeouts\.resetSeconds\)/);
  });

  it('a server that refuses the WebSocket upgrade (no /ws route, bad credentials) is a setup error naming the fix, not a lost session', async () => {
    let upgrades = 0;
    const statuses = [404, 403, 401];
    const http: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ observation: { text: '5' }, reward: 0, done: false })));
    });
    // An HTTP-only environment: every WebSocket upgrade is answered with a plain HTTP refusal.
    http.on('upgrade', (_req, socket) => {
      const status = statuses[upgrades++ % statuses.length] ?? 404;
      socket.end(`HTTP/1.1 ${status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => http.close(() => resolve())));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const env = environment(url, { retries: 3 });
    for (const expected of [/HTTP 404 on the WebSocket upgrade: no WebSocket route here: engine\.environment\.servers\[\]\.url must be the base URL of an OpenEnv server/, /HTTP 403 .*apiKeyEnv.*no WebSocket route here/, /HTTP 401 .*check engine\.environment\.apiKeyEnv/]) {
      const error = await env.step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EnvironmentProtocolError);
      expect(String(error)).toMatch(expected);
    }
    // One upgrade per turn: no retries spent on a refusal that no retry changes.
    expect(upgrades).toBe(3);
    expect(env.liveEpisodes).toBe(0);
  });

  it('a server that is down: connection refused is unavailable, then environment-unavailable after the retries', async () => {
    const s = await server(() => undefined);
    const url = s.url;
    await closers.pop()?.();
    await expect(environment(url).promptIds(3)).rejects.toBeInstanceOf(EnvironmentUnavailableError);
    await expect(environment(url).step(1, 0, 2, undefined, turn0, { promptIds, observationIds: [] })).rejects.toMatchObject({ reason: 'environment-unavailable' });
  });
});

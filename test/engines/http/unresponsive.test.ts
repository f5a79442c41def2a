/**
 * An SGLang that stops answering: a turn that was aborted waits for the engine's answer (the
 * tokens generated so far), but not forever. No real engine hangs on demand, so a small local
 * HTTP server plays one whose /generate never answers, beside one that answers its aborts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineHttpError, SglangRolloutEngine } from '../../../src/engines/http';

/** How the fake treats each request id's /generate: answer it on its abort, never, or after a delay whatever happens. */
type Behaviour = { kind: 'answers-abort' } | { kind: 'hangs' } | { kind: 'answers-after'; ms: number };

const behaviours = new Map<string, Behaviour>();
const pending = new Map<string, ServerResponse>();
const abortsOf = new Map<string, number>();
let server: Server;
let url: string;

function answer(res: ServerResponse, rid: string, finish: 'stop' | 'abort', tokens: number): void {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  const logprobs = Array.from({ length: tokens }, (_, i) => [-0.5, 10 + i, null]);
  res.end(JSON.stringify({ output_ids: logprobs.map(([, id]) => id), meta_info: { id: rid, finish_reason: { type: finish }, completion_tokens: tokens, output_token_logprobs: logprobs } }));
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => resolve(JSON.parse(text) as Record<string, unknown>));
    req.on('error', reject);
  });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void readJson(req).then((body) => {
      const rid = String(body.rid);
      if (req.url === '/abort_request') {
        abortsOf.set(rid, (abortsOf.get(rid) ?? 0) + 1);
        const waiting = pending.get(rid);
        if (waiting !== undefined && behaviours.get(rid)?.kind === 'answers-abort') {
          pending.delete(rid);
          answer(waiting, rid, 'abort', 1);
        }
        res.writeHead(200).end();
        return;
      }
      const behaviour = behaviours.get(rid);
      if (req.url !== '/generate' || behaviour === undefined) {
        res.writeHead(404).end();
        return;
      }
      if (behaviour.kind === 'answers-after') setTimeout(() => answer(res, rid, 'stop', 2), behaviour.ms);
      else pending.set(rid, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of pending.values()) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const sampling = { temperature: 1, stopTokenIds: [] };
const ABORT_ANSWER_MS = 300;
const engine = () => new SglangRolloutEngine({ baseUrl: url, sampling, abortAnswerTimeoutMs: ABORT_ANSWER_MS });
const turn = (requestId: string) => ({ requestId, sampleId: 0, turn: 0, contextTokens: 1, prefixTokens: 0, maxNewTokens: 4, inputIds: [1] });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Holds the test until the engine holds the turn's /generate: the abort then finds it registered. */
async function untilPending(rid: string): Promise<void> {
  while (!pending.has(rid)) await sleep(5);
}

describe('sglang adapter: an aborted turn waits for its answer, within a bound', () => {
  it('gives up on an engine that never answers the aborted turn, with an error naming the request, and stops sending aborts', async () => {
    behaviours.set('hung', { kind: 'hangs' });
    const stop = new AbortController();
    const generating = engine().generate(turn('hung'), stop.signal);
    await untilPending('hung');
    const abortedAt = Date.now();
    stop.abort();
    const error = await generating.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineHttpError);
    expect(String(error)).toMatch(/POST http:.*\/generate: no response: no answer to request hung within 300 ms of its abort: the engine is unresponsive/);
    // Not before the bound (the timer starts at the abort, not at the request).
    expect(Date.now() - abortedAt).toBeGreaterThanOrEqual(ABORT_ANSWER_MS - 20);
    expect(abortsOf.get('hung')).toBeGreaterThanOrEqual(1);
    // The abort is re-sent only while its turn waits: once given up on, no more (re-sends are at most 1 s apart).
    await sleep(2000);
    const sent = abortsOf.get('hung');
    await sleep(1500);
    expect(abortsOf.get('hung')).toBe(sent);
  });

  it('returns what an engine answers to the abort, the bound not reached', async () => {
    behaviours.set('answered', { kind: 'answers-abort' });
    const stop = new AbortController();
    const generating = engine().generate(turn('answered'), stop.signal);
    await untilPending('answered');
    stop.abort();
    const result = await generating;
    expect(result).toMatchObject({ requestId: 'answered', finishReason: 'abort', outputTokens: 1 });
  });

  it('does not bound a turn that was not aborted: a generation longer than the bound is answered', async () => {
    behaviours.set('long', { kind: 'answers-after', ms: 3 * ABORT_ANSWER_MS });
    const result = await engine().generate(turn('long'), new AbortController().signal);
    expect(result).toMatchObject({ requestId: 'long', finishReason: 'stop', outputTokens: 2 });
  });
});

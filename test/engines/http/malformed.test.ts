/**
 * Answers outside the protocol: a server that answers 200 with the wrong shape (no real engine
 * does this on purpose, so a small local HTTP server plays the misbehaving engine). The adapters
 * must refuse with EngineProtocolError naming the endpoint, never pass the answer on.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EngineHttpError, EngineProtocolError, HttpTrainer, SglangRolloutEngine, VllmRolloutEngine } from '../../../src/engines/http';
import { HttpClient } from '../../../src/engines/http/client';
import { engineMayRecover } from '../../../src/engines/transient';

const answers: Record<string, { status: number; body: string; type?: string }> = {
  '/generate': { status: 200, body: JSON.stringify({ output_ids: [1], meta_info: { id: 'r', finish_reason: { type: 'done' } } }) },
  '/model_info': { status: 200, body: JSON.stringify({ weight_version: 'default' }) },
  '/update_weights_from_disk': { status: 200, body: JSON.stringify({ success: false, message: 'shape mismatch' }) },
  // What a vLLM adapter reads before its first call (the served version and the sleep state).
  '/weight_info': { status: 200, body: JSON.stringify({ weight_version: '0' }) },
  '/is_sleeping': { status: 200, body: JSON.stringify({ is_sleeping: false }) },
  '/v1/completions': { status: 200, type: 'text/event-stream', body: 'data: {"choices":[{"finish_reason":null,"logprobs":{"tokens":["hello"],"token_logprobs":[-1]}}]}\n\n' },
  '/trainer/status': { status: 200, body: 'not json' },
  '/trainer/onload': { status: 500, body: 'CUDA out of memory' },
};
/** A server that echoes the request's headers in its error page. */
const ECHOES_HEADERS = '/trainer/offload';

let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const answer = answers[(req.url ?? '').split('?')[0] ?? ''];
    req.resume();
    req.on('end', () => {
      if (req.url === '/echo-ok') {
        // A gateway page that is not JSON, echoing the request's headers, with status 200.
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end(`<html>you sent ${JSON.stringify(req.headers)}</html>`);
        return;
      }
      if (req.url === ECHOES_HEADERS) {
        res.writeHead(401, { 'Content-Type': 'text/plain' });
        res.end(`unauthorized, you sent: ${JSON.stringify(req.headers)}`);
        return;
      }
      res.writeHead(answer?.status ?? 404, { 'Content-Type': answer?.type ?? 'application/json' });
      res.end(answer?.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const sampling = { temperature: 1, stopTokenIds: [] };
const request = { requestId: 'r', sampleId: 0, turn: 0, contextTokens: 1, prefixTokens: 0, maxNewTokens: 2, inputIds: [1] };

describe('adapters refuse answers outside the protocol', () => {
  it('sglang: a wrong generate shape, a non-integer version, a failed weight update', async () => {
    const sglang = new SglangRolloutEngine({ baseUrl: url, sampling });
    const generate = await sglang.generate(request).catch((error: unknown) => error);
    expect(generate).toBeInstanceOf(EngineProtocolError);
    expect(String(generate)).toMatch(/POST http:.*\/generate: malformed response/);
    await expect(sglang.status()).rejects.toThrow(/GET .*\/model_info: weight_version "default" is not a non-negative integer/);
    await expect(sglang.updateWeights(1, '/w/v1')).rejects.toThrow(/update_weights_from_disk: update to v1 from \/w\/v1 failed: shape mismatch/);
  });

  it('sglang and vllm: a request without token ids is refused before it is sent', async () => {
    const { inputIds: _ids, ...counts } = request;
    await expect(new SglangRolloutEngine({ baseUrl: url, sampling }).generate(counts)).rejects.toBeInstanceOf(EngineProtocolError);
    await expect(new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' }).generate(counts)).rejects.toBeInstanceOf(EngineProtocolError);
  });

  it('vllm: a token that is not "token_id:<id>"', async () => {
    await expect(new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' }).generate(request)).rejects.toThrow(/token "hello" is not "token_id:<id>"/);
  });

  it('trainer: a body that is not JSON (protocol) and an HTTP 500 (status and body in the message)', async () => {
    const trainer = new HttpTrainer({ baseUrl: url });
    await expect(trainer.status()).rejects.toThrow(/GET .*\/trainer\/status: expected JSON, got "not json"/);
    const onload = await trainer.onload().catch((error: unknown) => error);
    expect(onload).toBeInstanceOf(EngineHttpError);
    expect((onload as EngineHttpError).status).toBe(500);
    expect(String(onload)).toContain('/trainer/onload: HTTP 500: CUDA out of memory');
  });

  it('trainer broadcast: a group the trainer could not open (success false), an answer without success, a bucket of mixed dtypes', async () => {
    const trainer = new HttpTrainer({ baseUrl: url });
    const spec = { name: 'g1', masterAddress: '127.0.0.1', worldSize: 2, backend: 'gloo' as const };
    const saved = { open: answers['/trainer/init_weights_update_group'], manifest: answers['/trainer/weights_manifest'] };
    try {
      answers['/trainer/init_weights_update_group'] = { status: 200, body: JSON.stringify({ success: false, message: 'a group is forming', master_address: '127.0.0.1', master_port: 0 }) };
      const refused = await trainer.broadcast.openWeightGroup(spec).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(EngineProtocolError);
      expect(String(refused)).toMatch(/POST .*\/trainer\/init_weights_update_group: opening g1 failed: a group is forming/);
      answers['/trainer/init_weights_update_group'] = { status: 200, body: JSON.stringify({ master_address: '127.0.0.1', master_port: 4000 }) };
      await expect(trainer.broadcast.openWeightGroup(spec)).rejects.toThrow(/init_weights_update_group: malformed response: .*success/);
      answers['/trainer/weights_manifest'] = { status: 200, body: JSON.stringify({ buckets: [{ names: ['a', 'b'], dtypes: ['bfloat16', 'float32'], shapes: [[2], [2]], bytes: 12 }], total_bytes: 12 }) };
      await expect(trainer.broadcast.weightManifest(1024)).rejects.toThrow(/weights_manifest: bucket 0: tensors of several dtypes \(bfloat16, float32\)/);
    } finally {
      for (const [path, answer] of [['/trainer/init_weights_update_group', saved.open], ['/trainer/weights_manifest', saved.manifest]] as const) {
        if (answer === undefined) delete answers[path];
        else answers[path] = answer;
      }
    }
  });

  it('sglang: a request aborted while still queued (no logprobs, 0 tokens) is a clean abort; missing logprobs otherwise are refused', async () => {
    const saved = answers['/generate'];
    try {
      answers['/generate'] = { status: 200, body: JSON.stringify({ meta_info: { id: 'r', finish_reason: { type: 'abort', message: 'Abort before prefill' }, completion_tokens: 0, prompt_tokens: 0 } }) };
      const queued = await new SglangRolloutEngine({ baseUrl: url, sampling }).generate(request);
      expect(queued).toMatchObject({ finishReason: 'abort', outputTokens: 0, outputIds: [] });
      answers['/generate'] = { status: 200, body: JSON.stringify({ meta_info: { id: 'r', finish_reason: { type: 'stop' }, completion_tokens: 1 } }) };
      await expect(new SglangRolloutEngine({ baseUrl: url, sampling }).generate(request)).rejects.toThrow(/no output_token_logprobs for 1 tokens \(finish stop\)/);
    } finally {
      answers['/generate'] = saved!;
    }
  });

  it('vllm: a stream cut without a finish reason or failing inside is retryable (EngineHttpError)', async () => {
    const saved = answers['/v1/completions'];
    try {
      answers['/v1/completions'] = { status: 200, type: 'text/event-stream', body: 'data: {"choices":[{"finish_reason":null,"logprobs":{"tokens":["token_id:5"],"token_logprobs":[-1]}}]}\n\n' };
      const cut = await new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' }).generate(request).catch((error: unknown) => error);
      expect(cut).toBeInstanceOf(EngineHttpError);
      expect(String(cut)).toMatch(/the stream ended without a finish reason/);
      answers['/v1/completions'] = { status: 200, type: 'text/event-stream', body: 'data: {"error":{"message":"engine overloaded"}}\n\n' };
      const failed = await new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' }).generate(request).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(EngineHttpError);
      expect(String(failed)).toMatch(/failed in the stream: engine overloaded/);
      // Each is what a crashed or restarting engine does: a group member runs again (engineMayRecover).
      expect([cut, failed].map(engineMayRecover)).toEqual([true, true]);
    } finally {
      answers['/v1/completions'] = saved!;
    }
  });

  it('vllm: a usage chunk with no choices after the finish (--enable-force-include-usage) is skipped', async () => {
    const saved = answers['/v1/completions'];
    try {
      answers['/v1/completions'] = {
        status: 200,
        type: 'text/event-stream',
        body:
          'data: {"choices":[{"finish_reason":"length","logprobs":{"tokens":["token_id:5","token_id:6"],"token_logprobs":[-1,-2]}}]}\n\n' +
          'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n' +
          'data: [DONE]\n\n',
      };
      const result = await new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' }).generate(request);
      expect(result).toMatchObject({ finishReason: 'length', outputTokens: 2, outputIds: [5, 6], logprobs: [-1, -2] });
    } finally {
      answers['/v1/completions'] = saved!;
    }
  });

  it('vllm: a completion states every sampling option but temperature as off (vLLM would fill them from the model)', async () => {
    let sent: Record<string, unknown> = {};
    const capturing = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        if (req.url !== '/v1/completions') {
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ weight_version: '0', is_sleeping: false }));
          return;
        }
        sent = JSON.parse(body) as Record<string, unknown>;
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.end('data: {"choices":[{"finish_reason":"stop","logprobs":{"tokens":["token_id:5"],"token_logprobs":[-1]}}]}\n\ndata: [DONE]\n\n');
      });
    });
    await new Promise<void>((resolve) => capturing.listen(0, '127.0.0.1', resolve));
    try {
      await new VllmRolloutEngine({ baseUrl: `http://127.0.0.1:${(capturing.address() as AddressInfo).port}`, sampling: { ...sampling, temperature: 0.7 }, model: 'm' }).generate(request);
      expect(sent).toMatchObject({ temperature: 0.7, top_p: 1, top_k: -1, min_p: 0, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0, logprobs: 0 });
    } finally {
      await new Promise((resolve) => capturing.close(resolve));
    }
  });

  it('sglang: a tag is released or resumed only where this adapter does not know it in that state already (SGLang dies on a repeat)', async () => {
    const calls: string[] = [];
    const recording = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        calls.push(`${req.url} ${body}`);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"success":true,"message":"ok"}');
      });
    });
    await new Promise<void>((resolve) => recording.listen(0, '127.0.0.1', resolve));
    try {
      const adapter = new SglangRolloutEngine({ baseUrl: `http://127.0.0.1:${(recording.address() as AddressInfo).port}`, sampling });
      // Unknown at first (a worker restarted beside a running server): asked as told.
      await adapter.resumeMemory(['weights', 'kv_cache']);
      // Known from then on: a retried activity's repeat is not sent, a partial one sends the rest only.
      await adapter.resumeMemory(['weights', 'kv_cache']);
      await adapter.releaseMemory(['kv_cache']);
      await adapter.releaseMemory(['weights', 'kv_cache']);
      await adapter.releaseMemory(['weights', 'kv_cache']);
      await adapter.resumeMemory(['weights']);
      expect(calls).toEqual([
        '/resume_memory_occupation {"tags":["weights","kv_cache"]}',
        '/release_memory_occupation {"tags":["kv_cache"]}',
        '/release_memory_occupation {"tags":["weights"]}',
        '/resume_memory_occupation {"tags":["weights"]}',
      ]);
    } finally {
      await new Promise((resolve) => recording.close(resolve));
    }
  });

  it('vllm: a stream whose connection breaks off (the engine process died) is retryable and names the endpoint', async () => {
    const dying = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url !== '/v1/completions') {
          // The status before the turn: weights v0, awake.
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ weight_version: '0', is_sleeping: false }));
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.write('data: {"choices":[{"finish_reason":null,"logprobs":{"tokens":["token_id:5"],"token_logprobs":[-1]}}]}\n\n');
        setTimeout(() => res.destroy(), 20);
      });
    });
    await new Promise<void>((resolve) => dying.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(dying.address() as AddressInfo).port}`;
      const error = await new VllmRolloutEngine({ baseUrl: base, sampling, model: 'm' }).generate(request).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineHttpError);
      expect(String(error)).toMatch(new RegExp(`POST ${base}/v1/completions: HTTP 200: request \\S+: the stream broke off: `));
      expect(engineMayRecover(error)).toBe(true);
    } finally {
      await new Promise((resolve) => dying.close(resolve));
    }
  });

  it('vllm: a status whose version is not an integer, or whose sleep flag is not a boolean, is refused naming the endpoint', async () => {
    const saved = { info: answers['/weight_info'], sleeping: answers['/is_sleeping'] };
    const vllm = () => new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' });
    try {
      await expect(vllm().status()).resolves.toMatchObject({ weightVersion: 0 });
      answers['/weight_info'] = { status: 200, body: JSON.stringify({ weight_version: 'latest' }) };
      await expect(vllm().status()).rejects.toThrow(/GET .*\/weight_info: weight_version "latest" is not a non-negative integer/);
      answers['/weight_info'] = saved.info!;
      answers['/is_sleeping'] = { status: 200, body: JSON.stringify({ is_sleeping: 'no' }) };
      const sleeping = await vllm().status().catch((error: unknown) => error);
      expect(sleeping).toBeInstanceOf(EngineProtocolError);
      expect(String(sleeping)).toMatch(/GET .*\/is_sleeping: .*is_sleeping/);
    } finally {
      answers['/weight_info'] = saved.info!;
      answers['/is_sleeping'] = saved.sleeping!;
    }
  });

  it('an answer whose body is cut off (the engine died mid-answer) is retryable and names the endpoint', async () => {
    const cut = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
        res.write('{"onloaded": tr');
        setTimeout(() => res.destroy(), 20);
      });
    });
    await new Promise<void>((resolve) => cut.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(cut.address() as AddressInfo).port}`;
      const error = await new HttpTrainer({ baseUrl: base }).status().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineHttpError);
      expect(String(error)).toMatch(new RegExp(`GET ${base}/trainer/status: HTTP 200: the answer's body was cut off: `));
      await expect(new HttpClient({ baseUrl: base }).call('POST', '/flush_cache')).rejects.toThrow(/POST .*\/flush_cache: HTTP 200: the answer's body was cut off/);
    } finally {
      await new Promise((resolve) => cut.close(resolve));
    }
  });

  it('an engine that is not there: no response, with the endpoint', async () => {
    const closed = new SglangRolloutEngine({ baseUrl: 'http://127.0.0.1:9', sampling });
    const error = await closed.status().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EngineHttpError);
    expect((error as EngineHttpError).status).toBeUndefined();
    expect(String(error)).toContain('GET http://127.0.0.1:9/model_info: no response');
  });
});

describe('KV capacity answers', () => {
  const sglang = () => new SglangRolloutEngine({ baseUrl: url, sampling });
  const vllm = () => new VllmRolloutEngine({ baseUrl: url, sampling, model: 'm' });
  const cacheConfig = (labels: string) => `# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{${labels}} 1.0\n`;
  function answering<T>(path: string, body: string, type: string, read: () => Promise<T>): Promise<T> {
    answers[path] = { status: 200, body, type };
    return read().finally(() => delete answers[path]);
  }

  it('sglang: max_total_num_tokens of /server_info; absent or null is none reported; a wrong type names the field', async () => {
    const json = 'application/json';
    await expect(answering('/server_info', JSON.stringify({ max_total_num_tokens: 123_456, tp_size: 8 }), json, () => sglang().kvCapacityTokens())).resolves.toBe(123_456);
    await expect(answering('/server_info', JSON.stringify({ tp_size: 8 }), json, () => sglang().kvCapacityTokens())).resolves.toBeUndefined();
    await expect(answering('/server_info', JSON.stringify({ max_total_num_tokens: null }), json, () => sglang().kvCapacityTokens())).resolves.toBeUndefined();
    // The server reports its first data-parallel scheduler's pool: times dp_size.
    await expect(answering('/server_info', JSON.stringify({ max_total_num_tokens: 1000, dp_size: 4 }), json, () => sglang().kvCapacityTokens())).resolves.toBe(4000);
    // No such endpoint: none reported. Another HTTP error is an error (the shard logs it, capacity unknown).
    await expect(sglang().kvCapacityTokens()).resolves.toBeUndefined();
    answers['/server_info'] = { status: 503, body: 'busy', type: 'text/plain' };
    await expect(sglang().kvCapacityTokens().finally(() => delete answers['/server_info'])).rejects.toThrow(/server_info: HTTP 503/);
    for (const bad of ['12', 0, -5, 1.5]) {
      const error = await answering('/server_info', JSON.stringify({ max_total_num_tokens: bad }), json, () => sglang().kvCapacityTokens()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineProtocolError);
      expect(String(error)).toMatch(/GET http:.*\/server_info: malformed response.*max_total_num_tokens/);
    }
  });

  it('vllm: num_gpu_blocks × block_size of the cache_config_info gauge, summed over engine cores; "None" or no gauge is none reported', async () => {
    const text = 'text/plain';
    const one = cacheConfig('block_size="16",cache_dtype="auto",engine="0",model_name="q\\"x",num_gpu_blocks="661"');
    await expect(answering('/metrics', `# HELP other\nvllm:num_requests_running{engine="0"} 0.0\n${one}`, text, () => vllm().kvCapacityTokens())).resolves.toBe(661 * 16);
    const two = cacheConfig('block_size="16",engine="0",num_gpu_blocks="100"') + cacheConfig('block_size="32",engine="1",num_gpu_blocks="10"');
    await expect(answering('/metrics', two, text, () => vllm().kvCapacityTokens())).resolves.toBe(100 * 16 + 10 * 32);
    await expect(answering('/metrics', cacheConfig('block_size="16",num_gpu_blocks="None"'), text, () => vllm().kvCapacityTokens())).resolves.toBeUndefined();
    await expect(answering('/metrics', 'vllm:num_requests_running{engine="0"} 0.0\n', text, () => vllm().kvCapacityTokens())).resolves.toBeUndefined();
    await expect(vllm().kvCapacityTokens()).resolves.toBeUndefined();
  });

  it('vllm: a block count or block size that is not a positive integer is a protocol error naming the label', async () => {
    const text = 'text/plain';
    for (const [labels, field] of [
      ['block_size="16",num_gpu_blocks="abc"', 'num_gpu_blocks = "abc"'],
      ['block_size="16",num_gpu_blocks="0"', 'num_gpu_blocks = "0"'],
      ['block_size="-16",num_gpu_blocks="10"', 'block_size = "-16"'],
      ['num_gpu_blocks="10"', 'block_size = null'],
    ] as const) {
      const error = await answering('/metrics', cacheConfig(labels), text, () => vllm().kvCapacityTokens()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineProtocolError);
      expect(String(error)).toContain(`GET ${url}/metrics: vllm:cache_config_info label ${field} is not a positive integer`);
    }
  });
});

describe('engine API keys', () => {
  it('are sent as a bearer token and never appear in an error, even when the engine echoes them', async () => {
    const key = 'sk-test-4f1c9e0b7a';
    const error = await new HttpTrainer({ baseUrl: url, apiKey: key }).offload().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineHttpError);
    expect(String(error)).toMatch(/401.*unauthorized, you sent: .*"authorization":"Bearer \[redacted\]"/);
    expect(String(error)).not.toContain(key);
  });

  it('never appear in a protocol error either (a 200 answer that is not JSON, echoing the headers)', async () => {
    const key = 'sk-test/with"quote';
    const error = await new HttpClient({ baseUrl: url, apiKey: key }).json('GET', '/echo-ok', undefined, z.object({})).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(EngineProtocolError);
    expect(String(error)).toContain('[redacted]');
    expect(String(error)).not.toContain('sk-test');
  });
});

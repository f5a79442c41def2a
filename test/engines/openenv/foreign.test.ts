/**
 * An OpenEnv server not written for this project, with configuration only: the environment that
 * OpenEnv's own `openenv init` generates (its echo template, unmodified: action {message},
 * observation {echoed_message, message_length}, reward 0.1 per character, one session at a time),
 * served by uvicorn as OpenEnv documents.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../src/process/ports';
import { OpenEnvEnvironment, VocabularyTokenizer } from '../../../src/engines/openenv';
import { startServerProcess, type ServerProcess } from '../../../src/engines/openenv/launch';
import { referencePython } from '../../../src/engines/reference/launch';
import { openEnvConfig } from './helpers';

const PRINTABLE = `\n${Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('')}`;

describe("OpenEnv's own template environment, configuration only", () => {
  let dir: string;
  let server: ServerProcess;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'timeshare-openenv-init-'));
    const openenv = path.join(path.dirname(referencePython()), 'openenv');
    execFileSync(openenv, ['init', 'echo_demo'], { cwd: dir, stdio: 'ignore', timeout: 120_000 });
    const port = await freePort();
    server = await startServerProcess([referencePython(), '-m', 'uvicorn', 'server.app:app', '--host', '127.0.0.1', '--port', String(port)], {
      cwd: path.join(dir, 'echo_demo'),
      name: 'openenv init echo_demo',
      url: `http://127.0.0.1:${port}`,
      startTimeoutMs: 180_000,
    });
  }, 300_000);
  afterAll(async () => {
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('plays episodes: text-field actions, the echoed_message observation, summed rewards, one session at a time', { timeout: 120_000 }, async () => {
    const tokenizer = new VocabularyTokenizer(PRINTABLE, PRINTABLE.length);
    const config = openEnvConfig([server.url], {
      toolCall: { format: 'text-field', field: 'message' },
      observationField: 'echoed_message',
      chatTemplate: { prompt: 'env: {observation}\n', observation: '\nenv: {observation}\n' },
      maxSteps: 3,
      sessionsPerServer: 1,
      deterministic: true,
    });
    const env = new OpenEnvEnvironment({ config, tokenizer });
    const play = async (sampleId: number, words: string[]) => {
      const promptIds = await env.promptIds(sampleId);
      const outputs: number[][] = [];
      const observations: number[][] = [];
      let last;
      for (const [turn, word] of words.entries()) {
        outputs.push(await tokenizer.encode(word));
        last = await env.step(sampleId, turn, word.length, undefined, outputs, { promptIds, observationIds: observations });
        observations.push(last.observationIds ?? []);
      }
      return { prompt: await tokenizer.decode(promptIds), observations: await Promise.all(observations.map((o) => tokenizer.decode(o))), last };
    };
    // Two samples at once on a server that holds one session: the second waits for the first's episode to end.
    const [a, b] = await Promise.all([play(1, ['hi', 'there', 'agent']), play(2, ['a', 'bb', 'ccc'])]);
    expect(a.prompt).toBe('env: Echo Demo environment ready!\n');
    expect(a.observations.slice(0, 2)).toEqual(['\nenv: hi\n', '\nenv: there\n']);
    expect(a.last).toMatchObject({ done: true });
    expect(a.last?.reward).toBeCloseTo(0.1 * (2 + 5 + 5), 9);
    expect(b.last?.reward).toBeCloseTo(0.1 * (1 + 2 + 3), 9);
    expect(env.liveEpisodes).toBe(0);
  });
});

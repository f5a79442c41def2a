/**
 * Text ↔ token ids with the rollout engine's own tokenizer: vLLM's and SGLang's `/tokenize` and
 * `/detokenize` (the reference engine serves both shapes), or a character-vocabulary file (the
 * reference engine's model config: token id i is vocabulary[i]).
 *
 * Only environment text is ever tokenized (prompts and observations); generated ids are never
 * re-tokenized (docs/engine-protocol.md, "Tokenization rule").
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { checkNoDuplicates, checkNonEmpty } from '../../validation/patterns';
import { HttpClient } from '../http/client';
import { EngineHttpError } from '../http/errors';
import { engineMayRecover } from '../transient';

export interface Tokenizer {
  /** Ids of `text`, no special tokens added. */
  encode(text: string): Promise<number[]>;
  /** Text of `ids` (SGLang and the reference engine drop special tokens such as EOS; vLLM keeps them: docs/engine-protocol.md). */
  decode(ids: readonly number[]): Promise<string>;
}

const ids = z.array(z.number().int().nonnegative());
const tokenizeAnswer = z.object({ tokens: ids }).loose();
const vllmDetokenizeAnswer = z.object({ prompt: z.string() }).loose();
const sglangDetokenizeAnswer = z.object({ text: z.string() }).loose();

export interface EngineTokenizerOptions {
  baseUrl: string;
  kind: 'sglang' | 'vllm';
  /** vLLM: the served model name (sent with each call). */
  model?: string;
  apiKey?: string;
  timeoutMs?: number;
}

/** The engine's `/tokenize` and `/detokenize`: vLLM answers {tokens} / {prompt}, SGLang {tokens} / {text}. */
export class EngineTokenizer implements Tokenizer {
  private readonly http: HttpClient;

  constructor(private readonly options: EngineTokenizerOptions) {
    this.http = new HttpClient({ baseUrl: options.baseUrl, ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }), controlTimeoutMs: options.timeoutMs ?? 30_000 });
  }

  async encode(text: string): Promise<number[]> {
    const model = this.options.kind === 'vllm' && this.options.model !== undefined ? { model: this.options.model } : {};
    const answer = await this.http.json('POST', '/tokenize', { ...model, prompt: text, add_special_tokens: false }, tokenizeAnswer);
    return answer.tokens;
  }

  async decode(tokens: readonly number[]): Promise<string> {
    if (this.options.kind === 'vllm') {
      const model = this.options.model === undefined ? {} : { model: this.options.model };
      return (await this.http.json('POST', '/detokenize', { ...model, tokens }, vllmDetokenizeAnswer)).prompt;
    }
    return (await this.http.json('POST', '/detokenize', { tokens }, sglangDetokenizeAnswer)).text;
  }
}

/**
 * The tokenizers of several rollout engines of one model, in order of preference (a gpu-node
 * worker's own engines first). A call that finds its engine unavailable (restarting, crashed,
 * answering 5xx) goes to the next, and later calls start from the one that answered, so a dead
 * engine costs one failed call, not one per turn. Every engine serves the same model, so any
 * answers with the same ids. Only when none answers does the call fail, naming each engine's error.
 */
export class FailoverTokenizer implements Tokenizer {
  private readonly engines: readonly [{ name: string; tokenizer: Tokenizer }, ...{ name: string; tokenizer: Tokenizer }[]];
  private preferred = 0;

  constructor(engines: readonly { name: string; tokenizer: Tokenizer }[]) {
    this.engines = checkNonEmpty('tokenizer engines', engines);
    checkNoDuplicates('tokenizer engines', engines, (engine) => engine.name);
  }

  /** The engine the next call goes to first. */
  get current(): string {
    return this.engines[this.preferred]!.name;
  }

  encode(text: string): Promise<number[]> {
    return this.call((tokenizer) => tokenizer.encode(text));
  }

  decode(ids: readonly number[]): Promise<string> {
    return this.call((tokenizer) => tokenizer.decode(ids));
  }

  private async call<T>(fn: (tokenizer: Tokenizer) => Promise<T>): Promise<T> {
    const failures: EngineHttpError[] = [];
    const start = this.preferred;
    for (let offset = 0; offset < this.engines.length; offset += 1) {
      const index = (start + offset) % this.engines.length;
      try {
        const answer = await fn(this.engines[index]!.tokenizer);
        this.preferred = index;
        return answer;
      } catch (error) {
        // Another engine may answer where this one could not; a 4xx is the text's fault.
        if (!(error instanceof EngineHttpError) || !engineMayRecover(error)) throw error;
        failures.push(error);
      }
    }
    const last = failures.at(-1)!;
    throw new EngineHttpError(
      `tokenizer of ${this.engines.length} rollout engines`,
      last.status,
      `none answered: ${failures.map((failure) => failure.message).join('; ')}`,
    );
  }
}

const vocabularyFile = z.object({ vocabulary: z.string().min(1), eos_id: z.number().int().nonnegative() }).loose();

/** A character vocabulary read from a file in the reference engine's config format. */
export class VocabularyTokenizer implements Tokenizer {
  private readonly vocabulary: string;
  private readonly size: number;

  constructor(vocabulary: string, eosId: number) {
    if (eosId !== [...vocabulary].length) throw new Error(`vocabulary tokenizer: eos_id must be the vocabulary's length ${[...vocabulary].length}, got ${eosId}`);
    this.vocabulary = vocabulary;
    this.size = eosId + 1;
  }

  static fromFile(path: string): VocabularyTokenizer {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (error) {
      throw new Error(`tokenizer file ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const parsed = vocabularyFile.safeParse(raw);
    if (!parsed.success) throw new Error(`tokenizer file ${path}: expected {vocabulary, eos_id}: ${z.prettifyError(parsed.error)}`);
    return new VocabularyTokenizer(parsed.data.vocabulary, parsed.data.eos_id);
  }

  async encode(text: string): Promise<number[]> {
    const chars = [...this.vocabulary];
    return [...text].map((char) => {
      const id = chars.indexOf(char);
      if (id < 0) throw new Error(`vocabulary tokenizer: ${JSON.stringify(char)} is not in the vocabulary ${JSON.stringify(this.vocabulary)}`);
      return id;
    });
  }

  async decode(tokens: readonly number[]): Promise<string> {
    const chars = [...this.vocabulary];
    return tokens
      .map((id) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.size) throw new Error(`vocabulary tokenizer: token id ${id} is outside the vocabulary (size ${this.size})`);
        return chars[id] ?? '';
      })
      .join('');
  }
}

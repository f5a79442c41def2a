import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CsvFormatError, parseCsvRecords } from '../../src/engines/simulated/csv';
import { loadTurnsCsv, loadWorkloadCsv, WorkloadModel } from '../../src/engines/simulated/workload';
import { workloadSchema } from '../../src/engines/types';
import { ValidationError } from '../../src/validation/patterns';
import { median, quantile, REPO_ROOT, SWE_TRAJECTORIES_CSV, tempDir } from './helpers';

const limits = { maxTurns: 100, maxTokens: 65_536 };
const ids = Array.from({ length: 5000 }, (_, i) => i);

describe('WorkloadModel (lognormal)', () => {
  const model = new WorkloadModel(workloadSchema.parse({}), limits);

  it('draws turns around the default median 36, within [1, maxTurns]', () => {
    const turns = ids.map((id) => model.turnsFor(id));
    expect(Math.abs(median(turns) - 36)).toBeLessThanOrEqual(2);
    expect(Math.abs(quantile(turns, 0.9) - 66)).toBeLessThanOrEqual(5);
    expect(Math.min(...turns)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...turns)).toBeLessThanOrEqual(100);
    const capped = new WorkloadModel(workloadSchema.parse({}), { maxTurns: 40, maxTokens: 1000 });
    expect(Math.max(...ids.map((id) => capped.turnsFor(id)))).toBe(40);
  });

  it('is a pure function of (seed, sample, turn)', () => {
    const again = new WorkloadModel(workloadSchema.parse({}), limits);
    for (const id of [0, 17, 4999]) {
      expect(again.turnsFor(id)).toBe(model.turnsFor(id));
      expect(again.completionTokens(id, 3)).toBe(model.completionTokens(id, 3));
      expect(again.observationTokens(id, 3)).toBe(model.observationTokens(id, 3));
      expect(again.envStepMs(id, 3)).toBe(model.envStepMs(id, 3));
      expect(again.reward(id)).toBe(model.reward(id));
    }
    const otherSeed = new WorkloadModel(workloadSchema.parse({ seed: 2 }), limits);
    expect(ids.slice(0, 50).some((id) => otherSeed.turnsFor(id) !== model.turnsFor(id))).toBe(true);
  });

  it("a turn's target: what remains after a resumed prefix, cut at the call's limit (capped)", () => {
    const id = ids.find((candidate) => model.completionTokens(candidate, 2) >= 10)!;
    const whole = model.completionTokens(id, 2);
    expect(model.turnTarget(id, 2, 0, whole)).toEqual({ tokens: whole, capped: false });
    expect(model.turnTarget(id, 2, 4, whole)).toEqual({ tokens: whole - 4, capped: false });
    expect(model.turnTarget(id, 2, 0, whole - 1)).toEqual({ tokens: whole - 1, capped: true });
    // A prefix at or past the turn's length leaves nothing to decode.
    expect(model.turnTarget(id, 2, whole + 3, 100)).toEqual({ tokens: 0, capped: false });
  });

  it('caps completion tokens at maxTokens, keeps them >= 1, and matches the per-turn median', () => {
    const tokens = ids.map((id) => model.completionTokens(id, id % 7));
    expect(Math.abs(median(tokens) - 89) / 89).toBeLessThan(0.05);
    const small = new WorkloadModel(workloadSchema.parse({}), { maxTurns: 100, maxTokens: 200 });
    const smallTokens = ids.map((id) => small.completionTokens(id, 0));
    expect(Math.max(...smallTokens)).toBe(200);
    expect(Math.min(...smallTokens)).toBeGreaterThanOrEqual(1);
  });

  it('pays reward 1 with probability successRate', () => {
    const rewarded = new WorkloadModel(workloadSchema.parse({ successRate: 0.3 }), limits);
    const rate = ids.reduce((sum, id) => sum + rewarded.reward(id), 0) / ids.length;
    expect(Math.abs(rate - 0.3)).toBeLessThan(0.03);
    expect(rewarded.promptTokens(1)).toBe(2000);
  });
});

describe('WorkloadModel (csv)', () => {
  it('loads the real trajectories of data/: 500, median 36 turns', () => {
    const turns = loadTurnsCsv(SWE_TRAJECTORIES_CSV);
    expect(turns).toHaveLength(500);
    expect(median(turns)).toBe(36);
  });

  it('draws turns from the CSV (path relative to baseDir), median about 36, capped at maxTurns', () => {
    const params = workloadSchema.parse({ turnDistribution: 'csv', csvPath: path.relative(REPO_ROOT, SWE_TRAJECTORIES_CSV) });
    const model = WorkloadModel.fromParams(params, { maxTurns: 250, maxTokens: 65_536 }, { baseDir: REPO_ROOT });
    const turns = ids.map((id) => model.turnsFor(id));
    expect(Math.abs(median(turns) - 36)).toBeLessThanOrEqual(3);
    expect(Math.min(...turns)).toBeGreaterThanOrEqual(13);
    const capped = WorkloadModel.fromParams(params, { maxTurns: 50, maxTokens: 65_536 }, { baseDir: REPO_ROOT });
    expect(Math.max(...ids.map((id) => capped.turnsFor(id)))).toBe(50);
  });

  it("uses the CSV's per-turn token and tool-time columns for that trajectory's draws, and names the columns it does not use", () => {
    const dir = tempDir('csv-columns');
    const file = path.join(dir, 'columns.csv');
    // Two trajectories: 10 turns of ~50 tokens and 1 s of tool time; 20 turns of ~2000 tokens and 30 s.
    fs.writeFileSync(file, 'task_id,turns,gen_tokens_total,tool_seconds_per_turn,wall_seconds\na,10,500,1,99\nb,20,40000,30,99\n');
    const table = loadWorkloadCsv(file);
    expect(table.rows).toEqual([
      { turns: 10, completionTokensPerTurn: 50, toolSecondsPerTurn: 1 },
      { turns: 20, completionTokensPerTurn: 2000, toolSecondsPerTurn: 30 },
    ]);
    expect(table.usedColumns).toEqual(['turns', 'gen_tokens_total', 'tool_seconds_per_turn']);
    expect(table.ignoredColumns).toEqual(['task_id', 'wall_seconds']);
    const params = workloadSchema.parse({ turnDistribution: 'csv', csvPath: file });
    const model = WorkloadModel.fromParams(params, limits);
    const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
    for (const [turns, tokens, toolMs] of [
      [10, 50, 1000],
      [20, 2000, 30_000],
    ] as const) {
      const samples = ids.filter((id) => model.turnsFor(id) === turns).slice(0, 400);
      expect(samples.length).toBeGreaterThan(100);
      const drawnTokens = mean(samples.flatMap((id) => [0, 1, 2, 3, 4].map((turn) => model.completionTokens(id, turn))));
      const drawnTool = mean(samples.flatMap((id) => [0, 1, 2, 3, 4].map((turn) => model.envStepMs(id, turn))));
      expect(Math.abs(drawnTokens / tokens - 1)).toBeLessThan(0.25);
      expect(Math.abs(drawnTool / toolMs - 1)).toBeLessThan(0.25);
    }
    expect(() => loadWorkloadCsv(path.join(dir, 'bad.csv'))).toThrow(/cannot read/);
    fs.writeFileSync(path.join(dir, 'neg.csv'), 'turns,tool_seconds_per_turn\n3,-1\n');
    expect(() => loadWorkloadCsv(path.join(dir, 'neg.csv'))).toThrow(/neg\.csv:2: column "tool_seconds_per_turn" must be a non-negative number/);
  });

  it('refuses a csv distribution without turn counts', () => {
    const params = workloadSchema.parse({ turnDistribution: 'csv', csvPath: 'x.csv' });
    expect(() => new WorkloadModel(params, limits)).toThrow(/fromParams/);
  });

  describe('malformed files name the file and line', () => {
    const dir = tempDir('csv');
    const write = (name: string, text: string): string => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text);
      return file;
    };

    it('a non-integer turns value', () => {
      const file = write('bad-value.csv', 'task_id,turns\na,12\nb,twelve\n');
      expect(() => loadTurnsCsv(file)).toThrow(CsvFormatError);
      expect(() => loadTurnsCsv(file)).toThrow(`${file}:3: column "turns" must be a positive integer, got "twelve"`);
    });

    it('a zero turns value (range check)', () => {
      const file = write('zero.csv', 'task_id,turns\na,0\n');
      expect(() => loadTurnsCsv(file)).toThrow(ValidationError);
      expect(() => loadTurnsCsv(file)).toThrow(`${file}:2`);
    });

    it('a row with the wrong number of fields', () => {
      const file = write('fields.csv', 'task_id,turns\r\na,12\r\nb,13,extra\r\n');
      expect(() => loadTurnsCsv(file)).toThrow(`${file}:3: expected 2 fields`);
    });

    it('no turns column, an empty file, no data rows, an unterminated quote', () => {
      expect(() => loadTurnsCsv(write('nocol.csv', 'task_id,steps\na,3\n'))).toThrow(/no "turns" column .*columns: task_id, steps/);
      expect(() => loadTurnsCsv(write('empty.csv', ''))).toThrow(/empty file/);
      expect(() => loadTurnsCsv(write('header-only.csv', 'turns\n'))).toThrow(/VAL_NON_EMPTY/);
      const open = write('open.csv', 'task_id,turns\n"a,12\n');
      expect(() => loadTurnsCsv(open)).toThrow(`${open}:2: unterminated quoted field`);
      expect(() => loadTurnsCsv(path.join(dir, 'missing.csv'))).toThrow(/cannot read workload CSV .*missing\.csv/);
    });

    it('quoted fields with commas, quotes and line breaks parse correctly', () => {
      const file = write('quoted.csv', '\uFEFFtask_id,"turns"\n"a, ""b""",7\n"multi\nline",9\n\n');
      expect(loadTurnsCsv(file)).toEqual([7, 9]);
      expect(parseCsvRecords('x,"y"\n"p\nq",r', 'mem')).toEqual([
        { line: 1, fields: ['x', 'y'] },
        { line: 2, fields: ['p\nq', 'r'] },
      ]);
    });
  });
});

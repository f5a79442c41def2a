/** The five named validation patterns (docs/design.md §5.1): each passes, each fails with a named error. */
import { describe, expect, it, vi } from 'vitest';
import { checkIntRange, checkNoDuplicates, checkNonEmpty, checkPostcondition, checkSubset, ValidationError } from '../../src/gpu';
import { catchValidation, expectValidation } from './helpers';

describe('ValidationError', () => {
  it('is an Error carrying pattern, subject and offending value, all in its message', () => {
    const error = new ValidationError('VAL_SUBSET', 'train.gpus', '[9]', 'not all elements are in the pool');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ValidationError');
    expect(error.pattern).toBe('VAL_SUBSET');
    expect(error.subject).toBe('train.gpus');
    expect(error.offending).toBe('[9]');
    expect(error.message).toBe('train.gpus: not all elements are in the pool (offending: [9]) [VAL_SUBSET]');
  });
});

describe('VAL_INT_RANGE checkIntRange', () => {
  it('passes integers in [min, max], both bounds inclusive, and returns the value', () => {
    expect(checkIntRange('pool.nodes', 1, 1, 8)).toBe(1);
    expect(checkIntRange('pool.nodes', 8, 1, 8)).toBe(8);
    expect(checkIntRange('asyncRatio', 0, 0, 0)).toBe(0);
    expect(checkIntRange('offset', -3, -5, 5)).toBe(-3);
  });

  it('fails below and above the range, naming subject, bounds and value', () => {
    const below = expectValidation(() => checkIntRange('pool.nodes', 0, 1, 8), 'VAL_INT_RANGE', 'pool.nodes', '[1, 8]', 'offending: 0');
    expect(below.subject).toBe('pool.nodes');
    expect(below.offending).toBe('0');
    const above = expectValidation(() => checkIntRange('pool.gpusPerNode', 65, 1, 64), 'VAL_INT_RANGE', 'pool.gpusPerNode', '[1, 64]');
    expect(above.offending).toBe('65');
  });

  it('fails non-integers even inside the range', () => {
    for (const value of [1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = expectValidation(() => checkIntRange('batch size', value, 0, 1e9), 'VAL_INT_RANGE', 'batch size', 'expected an integer');
      expect(error.offending).toBe(JSON.stringify(value));
    }
  });
});

describe('VAL_SUBSET checkSubset', () => {
  it('passes subsets, equal sets and the empty set', () => {
    expect(() => checkSubset('train.gpus', [1, 2], [0, 1, 2])).not.toThrow();
    expect(() => checkSubset('train.gpus', [2, 1, 0], [0, 1, 2])).not.toThrow();
    expect(() => checkSubset('train.gpus', [], [0, 1, 2])).not.toThrow();
    expect(() => checkSubset('train.gpus', new Set(['a']), ['a', 'b'])).not.toThrow();
  });

  it('fails naming only the elements outside the universe, once each, and the universe', () => {
    const error = expectValidation(
      () => checkSubset('train.gpus', [1, 9, 9, 12], [0, 1, 2], { universeName: 'rollout.gpus' }),
      'VAL_SUBSET',
      'train.gpus',
      'not all elements are in rollout.gpus',
    );
    expect(error.offending).toBe('[9,12]');
    expect(error.message).toContain('offending: [9,12]');
    expectValidation(() => checkSubset('x', [3], []), 'VAL_SUBSET', 'x', 'the allowed set', '[3]');
  });

  it('strict: a proper subset passes, the whole universe fails (duplicates in items do not count)', () => {
    expect(() => checkSubset('train.gpus', [0, 1], [0, 1, 2], { strict: true })).not.toThrow();
    expect(() => checkSubset('train.gpus', [0, 0, 1, 1], [0, 1, 2], { strict: true })).not.toThrow();
    const error = expectValidation(
      () => checkSubset('train.gpus', [2, 1, 0], [0, 1, 2], { strict: true, universeName: 'rollout.gpus' }),
      'VAL_SUBSET',
      'train.gpus',
      'must be a strict subset of rollout.gpus',
    );
    expect(error.offending).toBe('[2,1,0]');
    // Outside elements are reported before strictness.
    expectValidation(() => checkSubset('train.gpus', [0, 1, 2, 7], [0, 1, 2], { strict: true }), 'VAL_SUBSET', 'train.gpus', 'not all elements', '[7]');
  });

  it('renders string offenders quoted and unrenderable ones as text', () => {
    expect(catchValidation(() => checkSubset('reasons', ['bad'], ['stale'])).offending).toBe('["bad"]');
    const circular: { self?: unknown } = {};
    circular.self = circular;
    expect(catchValidation(() => checkSubset('objects', [circular], [])).offending).toBe('[object Object]');
  });

  it('truncates a long offending value to 200 characters', () => {
    const many = Array.from({ length: 200 }, (_, i) => 1000 + i);
    const error = catchValidation(() => checkSubset('sample ids', many, []));
    expect(error.offending).toHaveLength(200);
    expect(error.offending.endsWith('...')).toBe(true);
    expect(error.offending.startsWith('[1000,1001,')).toBe(true);
  });
});

describe('VAL_NON_EMPTY checkNonEmpty', () => {
  it('passes a non-empty list and returns the same array', () => {
    const items = [3];
    expect(checkNonEmpty('rollout.gpus', items)).toBe(items);
  });

  it('fails the empty list, naming the subject', () => {
    const error = expectValidation(() => checkNonEmpty('rollout.gpus', []), 'VAL_NON_EMPTY', 'rollout.gpus', 'must not be empty');
    expect(error.offending).toBe('[]');
    expect(error.message).toBe('rollout.gpus: must not be empty (offending: []) [VAL_NON_EMPTY]');
  });
});

describe('VAL_NO_DUPLICATES checkNoDuplicates', () => {
  it('passes distinct items, including the empty list', () => {
    expect(() => checkNoDuplicates('ids', [1, 2, 3])).not.toThrow();
    expect(() => checkNoDuplicates('ids', [])).not.toThrow();
    expect(() => checkNoDuplicates('loads', [{ rank: 0 }, { rank: 1 }], (load) => load.rank)).not.toThrow();
  });

  it('fails naming each duplicated value once', () => {
    const error = expectValidation(() => checkNoDuplicates('sample ids', [1, 2, 2, 3, 3, 3]), 'VAL_NO_DUPLICATES', 'sample ids', 'duplicates found');
    expect(error.offending).toBe('[2,3]');
  });

  it('compares by key when given one', () => {
    const error = expectValidation(
      () => checkNoDuplicates('re-shard targets', [{ rank: 4, load: 0 }, { rank: 4, load: 9 }], (load) => load.rank),
      'VAL_NO_DUPLICATES',
      're-shard targets',
    );
    expect(error.offending).toBe('[4]');
    // Without a key, distinct objects are distinct even if equal in value.
    expect(() => checkNoDuplicates('objects', [{ rank: 4 }, { rank: 4 }])).not.toThrow();
  });
});

describe('AST_POSTCONDITION checkPostcondition', () => {
  it('passes without rendering the state', () => {
    const describeState = vi.fn(() => 'state');
    checkPostcondition('ledger: conservation', true, describeState);
    expect(describeState).not.toHaveBeenCalled();
  });

  it('fails with the rendered state as the offending value', () => {
    const error = expectValidation(
      () => checkPostcondition('ledger: conservation', false, () => 'admitted 3, live 2'),
      'AST_POSTCONDITION',
      'ledger: conservation',
      'postcondition violated',
    );
    expect(error.offending).toBe('admitted 3, live 2');
  });
});

/**
 * Strict parsing of numbers and lists typed on the command line: decimal digits only (so `1e1`,
 * `0x10`, ` 3` or `3.0` are refused rather than read as 10, 16 or 3), within a stated range, and
 * comma-separated lists without empty items. Errors are commander InvalidArgumentErrors: usage
 * and exit 2.
 */
import { InvalidArgumentError } from 'commander';
import { addressProblem } from '../config/address';

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/** A decimal integer in [min, max] (max defaults to the largest safe integer). */
export function parseDecimal(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const decimal = DECIMAL.test(text);
  const value = decimal ? Number(text) : Number.NaN;
  if (decimal && !Number.isSafeInteger(value)) throw new InvalidArgumentError(`${name}: '${text}' is too large (at most ${max})`);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new InvalidArgumentError(`${name} must be a decimal integer ${range} (got '${text}')`);
  }
  return value;
}

/** `--name N` from a script's argv (no commander there): a decimal integer >= min, or `fallback` when absent. */
export function integerFlag(argv: readonly string[], name: string, fallback: number, min = 1): number {
  const at = argv.indexOf(name);
  return at < 0 ? fallback : parseDecimal(name, argv[at + 1] ?? '', min);
}

/** A commander argument parser for parseDecimal. */
export function decimal(name: string, min: number, max?: number): (text: string) => number {
  return (text) => parseDecimal(name, text, min, max);
}

/** A commander argument parser for a host:port address (src/config/address.ts). */
export function hostPort(name: string): (text: string) => string {
  return (text) => {
    const problem = addressProblem(text);
    if (problem !== undefined) throw new InvalidArgumentError(`${name}: ${problem}`);
    return text;
  };
}

/** Ranges in a list are at most this long (a typo like 0-99999999 is refused, not expanded). */
const MAX_RANGE = 65_536;

/**
 * A non-empty comma-separated list of decimal integers >= min, each item non-empty, no repeats;
 * an item `a-b` (a <= b) stands for a..b, as GPU lists in a config do.
 */
export function parseDecimalList(name: string, text: string, min: number): number[] {
  if (text.trim() === '') throw new InvalidArgumentError(`${name}: expected a comma-separated list of integers, got an empty list`);
  const items = text.split(',').map((item) => item.trim());
  const values = items.flatMap((item, index) => {
    if (item === '') throw new InvalidArgumentError(`${name}: item ${index + 1} of '${text}' is empty`);
    const range = /^([^-]+)-([^-]+)$/.exec(item);
    if (range === null) return [parseDecimal(name, item, min)];
    const [first, last] = [parseDecimal(name, range[1]!, min), parseDecimal(name, range[2]!, min)];
    if (first > last) throw new InvalidArgumentError(`${name}: range '${item}' runs backwards (write ${last}-${first})`);
    if (last - first >= MAX_RANGE) throw new InvalidArgumentError(`${name}: range '${item}' holds more than ${MAX_RANGE} values`);
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  });
  const repeated = values.filter((value, index) => values.indexOf(value) !== index);
  if (repeated.length > 0) throw new InvalidArgumentError(`${name}: ${[...new Set(repeated)].join(', ')} listed more than once in '${text}'`);
  return values;
}

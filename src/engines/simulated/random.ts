/**
 * Seeded, order-independent randomness for the simulated engines.
 *
 * Every draw is a pure function of (seed, stream name, sampleId, turn): there is no generator
 * state to advance. That is the point: a sample gets the same trajectory no matter which rank
 * or which worker process runs it, in which order, or how often it is retried after a crash or
 * a migration. A stateful PRNG would make the workload depend on scheduling.
 *
 * The hash is MurmurHash3 (x86, 32-bit) over the key's 32-bit words, in 32-bit integer math
 * (Math.imul), which has full avalanche after its finaliser: neighbouring sample ids and turns
 * give unrelated values.
 */
import { checkIntRange } from '../../validation/patterns';
import type { LogNormalSpec } from '../types';

/** Standard-normal quantile at 0.9: the p90 of a log-normal is median·exp(sigma·Z90). */
export const Z90 = 1.2815515655446004;

const TWO_POW_32 = 4294967296;
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function rotl32(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** One MurmurHash3 body round: mixes a 32-bit word `k` into the running hash `h`. */
function mixWord(h: number, k: number): number {
  let k1 = Math.imul(k, C1);
  k1 = rotl32(k1, 15);
  k1 = Math.imul(k1, C2);
  let h1 = h ^ k1;
  h1 = rotl32(h1, 13);
  return (Math.imul(h1, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finaliser: forces every input bit to affect every output bit. */
function fmix32(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** MurmurHash3 of a list of 32-bit words (each taken modulo 2^32). Returns an unsigned 32-bit value. */
export function hashWords32(words: readonly number[], seed = 0): number {
  let h = seed | 0;
  for (const w of words) h = mixWord(h, w | 0);
  return fmix32(h ^ (words.length * 4));
}

/** MurmurHash3 of a string's UTF-16 code units (stream names are short ASCII identifiers). */
export function hashString32(text: string): number {
  const words: number[] = [];
  for (let i = 0; i < text.length; i++) words.push(text.charCodeAt(i));
  return hashWords32(words, 0x9747b28c);
}

/** Splits a non-negative safe integer into its low and high 32-bit words, so ids above 2^32 still hash fully. */
function splitSafeInteger(subject: string, value: number): [number, number] {
  checkIntRange(subject, value, 0, Number.MAX_SAFE_INTEGER);
  const high = Math.floor(value / TWO_POW_32);
  return [value - high * TWO_POW_32, high];
}

/** True for an integer in [0, 2^32): its high word is 0 (the common case, checked without allocating). */
function isUint32(value: number): boolean {
  return value >>> 0 === value;
}

/**
 * A uniform draw in the open interval (0, 1), keyed by (seed, stream, sampleId, turn).
 * Open at both ends so inverse CDFs never see 0 or 1. Resolution 2^-32.
 */
export function uniform01(seed: number, stream: string, sampleId: number, turn = 0): number {
  return drawFrom(streamState(seed, stream), sampleId, turn);
}

/**
 * The draws of one (seed, stream): `uniform01(seed, stream, sampleId, turn)` for every sampleId
 * and turn, with the hash state of the fixed words computed once (the simulator draws several
 * times per simulated turn).
 */
export function uniformStream(seed: number, stream: string): (sampleId: number, turn?: number) => number {
  const state = streamState(seed, stream);
  return (sampleId, turn = 0) => drawFrom(state, sampleId, turn);
}

/** The hash state after the words that do not vary within a stream: seed (low, high) and the stream name. */
function streamState(seed: number, stream: string): number {
  const seedSmall = isUint32(seed);
  const seedLo = seedSmall ? seed : splitSafeInteger('random draw seed', seed)[0];
  const seedHi = seedSmall ? 0 : splitSafeInteger('random draw seed', seed)[1];
  let h = 0;
  h = mixWord(h, seedLo | 0);
  h = mixWord(h, seedHi | 0);
  return mixWord(h, streamHash(stream) | 0);
}

/** The same words as hashWords32([seedLo, seedHi, hash(stream), idLo, idHi, turnLo, turnHi]), mixed without building the array. */
function drawFrom(state: number, sampleId: number, turn: number): number {
  const idSmall = isUint32(sampleId);
  const idLo = idSmall ? sampleId : splitSafeInteger('random draw sampleId', sampleId)[0];
  const idHi = idSmall ? 0 : splitSafeInteger('random draw sampleId', sampleId)[1];
  const turnSmall = isUint32(turn);
  const turnLo = turnSmall ? turn : splitSafeInteger('random draw turn', turn)[0];
  const turnHi = turnSmall ? 0 : splitSafeInteger('random draw turn', turn)[1];
  let h = state;
  h = mixWord(h, idLo | 0);
  h = mixWord(h, idHi | 0);
  h = mixWord(h, turnLo | 0);
  h = mixWord(h, turnHi | 0);
  return (fmix32(h ^ 28) + 0.5) / TWO_POW_32;
}

/** Stream names are few and fixed: hash each once. */
const streamHashes = new Map<string, number>();
function streamHash(stream: string): number {
  let hash = streamHashes.get(stream);
  if (hash === undefined) {
    hash = hashString32(stream);
    streamHashes.set(stream, hash);
  }
  return hash;
}

// Acklam's rational approximation of the standard-normal quantile (relative error < 1.15e-9).
const A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
const B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
const C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
const D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const P_LOW = 0.02425;

/** Evaluates a polynomial with coefficients from highest degree down (Horner). */
function horner(coefficients: readonly number[], x: number): number {
  let acc = 0;
  for (const c of coefficients) acc = acc * x + c;
  return acc;
}

/** Inverse of the standard-normal CDF for p in (0, 1). */
export function inverseNormalCdf(p: number): number {
  if (!(p > 0 && p < 1)) {
    throw new RangeError(`inverseNormalCdf: p must be in the open interval (0, 1), got ${p}`);
  }
  if (p < P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    return horner(C, q) / (horner(D, q) * q + 1);
  }
  if (p > 1 - P_LOW) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -horner(C, q) / (horner(D, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (horner(A, r) * q) / (horner(B, r) * r + 1);
}

/**
 * The log-normal with the given median and p90, evaluated at quantile `u` (inverse-CDF sampling):
 * sigma = ln(p90/median)/Z90, value = median·exp(sigma·Φ⁻¹(u)). p90 = median gives a constant.
 */
export function logNormal(spec: LogNormalSpec, u: number): number {
  return logNormalQuantile(spec)(u);
}

/** `logNormal(spec, u)` as a function of u, with the spec checked and sigma computed once. */
export function logNormalQuantile(spec: LogNormalSpec): (u: number) => number {
  if (!(spec.median > 0) || !(spec.p90 >= spec.median)) {
    throw new RangeError(`logNormal: need 0 < median <= p90, got median ${spec.median}, p90 ${spec.p90}`);
  }
  const { median } = spec;
  const sigma = Math.log(spec.p90 / median) / Z90;
  return (u) => median * Math.exp(sigma * inverseNormalCdf(u));
}

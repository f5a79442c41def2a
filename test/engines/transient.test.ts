/** Which engine errors a group member runs again after, and a tokenizer hands to another engine (src/engines/transient.ts). */
import { describe, expect, it } from 'vitest';
import { EngineHttpError, EngineProtocolError } from '../../src/engines/http/errors';
import { SimulatedEngineFault } from '../../src/engines/simulated/faults';
import { engineMayRecover } from '../../src/engines/transient';
import { FencingError } from '../../src/store';

const http = (status: number | undefined) => new EngineHttpError('POST http://engine/generate', status, 'detail');

describe('engineMayRecover', () => {
  it('takes no answer, an answer broken off, the engine’s own trouble, overload and slowness as passing', () => {
    expect([undefined, 200, 500, 502, 503, 504, 408, 429].map((status) => engineMayRecover(http(status)))).toEqual([true, true, true, true, true, true, true, true]);
    expect(engineMayRecover(new SimulatedEngineFault('simulated fault: rollout 1 generate failed'))).toBe(true);
  });

  it("takes the request's faults, a protocol error, a fenced-out owner or anything else as lasting", () => {
    expect([400, 401, 403, 404, 409, 413, 422].map((status) => engineMayRecover(http(status)))).toEqual([false, false, false, false, false, false, false]);
    expect(engineMayRecover(new EngineProtocolError('POST http://engine/generate', 'malformed'))).toBe(false);
    expect(engineMayRecover(new FencingError(1, '/store/samples/1.json', 'shard@1.1', 'shard@2'))).toBe(false);
    expect(engineMayRecover(new Error('bug'))).toBe(false);
    expect(engineMayRecover('not an error')).toBe(false);
  });
});

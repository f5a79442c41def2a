/**
 * Before a weight-update group forms, the gpu-node worker waits until every member's engine
 * answers (src/activities/weightBroadcast.ts, awaitWeightGroupMembers): a member still starting
 * after a crash would otherwise leave the others in the formation until the group's timeout.
 * Engines that do not answer yet are asked again; a wrong answer fails at once.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { EngineHttpError } from '../../src/engines/http/errors';
import { engineOnlyNodeActivities, inActivity } from '../helpers/activityContext';

const RUN = 'run-members';
const UP = { weightVersion: 3, resident: ['weights', 'kv_cache'], runningRequests: 0 };
const refused = () => {
  throw new EngineHttpError('GET http://127.0.0.1:1/model_info', undefined, 'fetch failed (connect ECONNREFUSED)');
};
const loading = () => {
  throw new EngineHttpError('GET http://127.0.0.1:1/model_info', 503, 'loading');
};

/** An engine whose status calls answer in turn with `answers` (the last one repeats). */
class ScriptedEngine {
  asked = 0;
  private onAsked: (() => void) | undefined;

  constructor(private readonly answers: (() => unknown)[]) {}

  async status(): Promise<unknown> {
    const answer = this.answers[Math.min(this.asked, this.answers.length - 1)]!;
    this.asked++;
    this.onAsked?.();
    return answer();
  }

  /** Resolves once the engine has been asked `count` times. */
  askedTimes(count: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.asked >= count) resolve();
      };
      this.onAsked = check;
      check();
    });
  }
}

const awaitMembers = (engines: ScriptedEngine[]) =>
  inActivity(() => engineOnlyNodeActivities(RUN, engines).awaitWeightGroupMembers({ runId: RUN, ranks: engines.map((_, rank) => rank) }), 'awaitWeightGroupMembers');

describe('awaitWeightGroupMembers', () => {
  it('asks a member again while it does not answer or answers an HTTP 5xx, and resolves once every member answers', async () => {
    const up = new ScriptedEngine([() => UP]);
    const restarting = new ScriptedEngine([refused, loading, () => UP]);
    await expect(awaitMembers([up, restarting]).result).resolves.toBeUndefined();
    expect(restarting.asked).toBe(3);
    // A member that answered is not asked again.
    expect(up.asked).toBe(1);
  });

  it('fails at once, naming the rank, on a malformed answer', async () => {
    const malformed = new ScriptedEngine([() => ({ weightVersion: -1, resident: [], runningRequests: 0 })]);
    const error = await awaitMembers([new ScriptedEngine([() => UP]), malformed]).result.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApplicationFailure);
    expect((error as ApplicationFailure).type).toBe('EngineProtocolError');
    expect((error as ApplicationFailure).nonRetryable).toBe(true);
    expect((error as ApplicationFailure).message).toMatch(/^rank 1 engine status returned a malformed answer: /);
    expect(malformed.asked).toBe(1);
  });

  it('fails at once on an HTTP 4xx (a member that answers, but refuses: not one that is starting)', async () => {
    const unauthorized = new ScriptedEngine([
      () => {
        throw new EngineHttpError('GET http://127.0.0.1:1/model_info', 401, 'unauthorized');
      },
    ]);
    await expect(awaitMembers([unauthorized]).result).rejects.toThrow(/HTTP 401/);
    expect(unauthorized.asked).toBe(1);
  });

  it('ends when cancelled (the attempt is over) and asks no more', async () => {
    const down = new ScriptedEngine([refused]);
    const call = awaitMembers([down]);
    await down.askedTimes(2);
    call.cancel('CANCELLED');
    await expect(call.result).rejects.toBeInstanceOf(CancelledFailure);
    const asked = down.asked;
    // Longer than two of its polls: a loop left running would have asked again.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(down.asked).toBe(asked);
  });
});

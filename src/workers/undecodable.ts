/**
 * Activities refuse an argument that could not be decoded (the payload converter's marker,
 * src/temporal/payloadConverter.ts): the attempt fails retryably with the reason, as a codec
 * error did before the marker existed, instead of running on a value that is not its input.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, ActivityInterceptorsFactory, Next } from '@temporalio/worker';
import { isUndecodable } from '../temporal/payloadConverter';

class RefuseUndecodableArguments implements ActivityInboundCallsInterceptor {
  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    const bad = input.args.find(isUndecodable);
    if (bad !== undefined) throw ApplicationFailure.retryable(`activity argument cannot be decoded: ${bad.undecodablePayload}`, 'UndecodablePayload');
    return next(input);
  }
}

export const refuseUndecodableArguments: ActivityInterceptorsFactory = () => ({ inbound: new RefuseUndecodableArguments() });

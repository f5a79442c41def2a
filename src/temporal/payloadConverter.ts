/**
 * The payload converter of every client and worker (`dataConverter.payloadConverterPath`; it
 * also runs inside the workflow sandbox, so it imports nothing from Node). It never throws on a
 * payload it cannot read: a payload with an encoding no converter knows, malformed JSON, or one
 * the codec could not decrypt becomes an `UndecodablePayload` marker value. A signal whose
 * payload the SDK cannot decode would otherwise fail every workflow task of the run for good;
 * with the marker it reaches the handler, whose zod validation rejects it (reason in status).
 * Workflow inputs and activity arguments refuse the marker (assertDecoded) so a misconfigured
 * key still fails the task, retried until the key is fixed, as before.
 */
import { defaultPayloadConverter, str, type Payload, type PayloadConverter } from '@temporalio/common';

/** Encoding the payload codec gives a payload it could not decode; data = the reason (UTF-8). */
export const UNDECODABLE_ENCODING = 'binary/undecodable';

/** What a payload that could not be decoded becomes; a strict zod object schema rejects it. */
export interface UndecodablePayload {
  undecodablePayload: string;
}

export function isUndecodable(value: unknown): value is UndecodablePayload {
  return typeof value === 'object' && value !== null && typeof (value as Partial<UndecodablePayload>).undecodablePayload === 'string';
}

/** Throws (a plain Error: fails the task, retried) where a value must have been decoded. */
export function assertDecoded(what: string, value: unknown): void {
  if (isUndecodable(value)) throw new Error(`${what}: payload cannot be decoded: ${value.undecodablePayload}`);
}

const encodingOf = (payload: Payload): string => {
  const raw = payload.metadata?.encoding;
  return raw == null ? '(none)' : str(raw);
};

export class TolerantPayloadConverter implements PayloadConverter {
  toPayload<T>(value: T): Payload {
    return defaultPayloadConverter.toPayload(value);
  }

  fromPayload<T>(payload: Payload): T {
    const encoding = encodingOf(payload);
    if (encoding === UNDECODABLE_ENCODING) return { undecodablePayload: str(payload.data ?? new Uint8Array()) } as T;
    try {
      return defaultPayloadConverter.fromPayload<T>(payload);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return { undecodablePayload: `encoding '${encoding}': ${reason}` } as T;
    }
  }
}

export const payloadConverter = new TolerantPayloadConverter();

/**
 * Payload encryption: an AES-256-GCM PayloadCodec, so that workflow inputs, results, signals,
 * updates and activity arguments are ciphertext in the Temporal server's history. Client,
 * workers and the codec endpoint (./codecServer.ts) share one key, read from a file or an
 * environment variable (never from the config file itself); its id travels in each payload's
 * metadata so a reader with another key fails with a message that says so.
 *
 * Wire format of an encrypted payload: metadata `encoding: binary/encrypted`,
 * `encryption-cipher: AES-256-GCM`, `encryption-key-id: <id>`; data = 12-byte IV ‖ ciphertext ‖
 * 16-byte tag, the plaintext being the original payload in a compact binary framing (below: no
 * base64, so an encrypted payload is only 28 bytes plus the metadata larger than the original). Payloads without that encoding pass through decode unchanged (history written before
 * the codec was enabled stays readable).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { CODEC_KEY_ID_PATTERN } from '../config/schema';
import { UNDECODABLE_ENCODING } from './payloadConverter';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const CIPHER_NAME = 'AES-256-GCM';
export const KEY_ID_METADATA = 'encryption-key-id';
export const CIPHER_METADATA = 'encryption-cipher';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;


/** A codec problem: wrong key, altered payload, unusable key material. Never contains key bytes. */
export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (bytes: Uint8Array | null | undefined): string => (bytes == null ? '' : decoder.decode(bytes));

/**
 * The plaintext framing of a payload: version byte 1, u16 count of metadata entries, each entry
 * (u16 key length, key UTF-8, u32 value length, value), then the data to the end.
 */
const FRAMING_VERSION = 1;

function framePayload(payload: Payload): Buffer {
  const parts: Buffer[] = [];
  const entries = Object.entries(payload.metadata ?? {});
  const head = Buffer.alloc(3);
  head.writeUInt8(FRAMING_VERSION, 0);
  head.writeUInt16BE(entries.length, 1);
  parts.push(head);
  for (const [key, value] of entries) {
    const keyBytes = Buffer.from(key, 'utf8');
    const lengths = Buffer.alloc(6);
    lengths.writeUInt16BE(keyBytes.length, 0);
    lengths.writeUInt32BE(value.length, 2);
    parts.push(lengths.subarray(0, 2), keyBytes, lengths.subarray(2), Buffer.from(value));
  }
  parts.push(Buffer.from(payload.data ?? new Uint8Array()));
  return Buffer.concat(parts);
}

function unframePayload(frame: Buffer): Payload {
  let at = 0;
  const need = (bytes: number): void => {
    if (at + bytes > frame.length) throw new Error(`framing ends early at byte ${at} (need ${bytes} more, have ${frame.length - at})`);
  };
  need(3);
  const version = frame.readUInt8(0);
  if (version !== FRAMING_VERSION) throw new Error(`unknown framing version ${version}`);
  const count = frame.readUInt16BE(1);
  at = 3;
  const metadata: Record<string, Uint8Array> = {};
  for (let i = 0; i < count; i++) {
    need(2);
    const keyLength = frame.readUInt16BE(at);
    at += 2;
    need(keyLength + 4);
    const key = frame.subarray(at, at + keyLength).toString('utf8');
    at += keyLength;
    const valueLength = frame.readUInt32BE(at);
    at += 4;
    need(valueLength);
    metadata[key] = new Uint8Array(frame.subarray(at, at + valueLength));
    at += valueLength;
  }
  return { metadata, data: new Uint8Array(frame.subarray(at)) };
}

/**
 * Parses key material: 32 bytes written as 64 hex characters or as base64 (surrounding
 * whitespace ignored). `source` names where it came from; the key itself is never echoed.
 */
export function parseCodecKey(material: string, source: string): Buffer {
  const trimmed = material.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) key = Buffer.from(trimmed, 'hex');
  else if (/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) key = Buffer.from(trimmed, 'base64');
  if (key === undefined || key.length !== KEY_BYTES) {
    throw new CodecError(
      `${source}: expected a 256-bit key, 32 bytes written as 64 hex characters or as base64 (got ${trimmed.length} characters${key === undefined ? ' that are neither' : `, ${key.length} bytes`}); generate one with: openssl rand -hex 32`,
    );
  }
  return key;
}

export interface CodecKeySource {
  keyId: string;
  /** Path of a file holding the key. */
  keyFile?: string;
  /** Name of an environment variable holding the key. */
  keyEnv?: string;
}

/** Reads the key from its file or environment variable, with an error naming the source. */
export function loadCodecKey(source: CodecKeySource, env: NodeJS.ProcessEnv = process.env): Buffer {
  if ((source.keyFile === undefined) === (source.keyEnv === undefined)) {
    throw new CodecError('payload codec: give exactly one of a key file or a key environment variable');
  }
  if (source.keyFile !== undefined) {
    let material: string;
    try {
      material = readFileSync(source.keyFile, 'utf8');
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new CodecError(`payload codec key file ${source.keyFile}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? String(error)})`}`);
    }
    return parseCodecKey(material, `payload codec key file ${source.keyFile}`);
  }
  const name = source.keyEnv as string;
  const material = env[name];
  if (material === undefined || material.trim() === '') {
    throw new CodecError(`payload codec: environment variable ${name} is not set (it must hold the key)`);
  }
  return parseCodecKey(material, `payload codec key in $${name}`);
}

export class AesGcmCodec implements PayloadCodec {
  private readonly key: Buffer;

  constructor(
    readonly keyId: string,
    key: Uint8Array,
  ) {
    if (!CODEC_KEY_ID_PATTERN.test(keyId)) throw new CodecError(`payload codec key id ${JSON.stringify(keyId)}: expected ${CODEC_KEY_ID_PATTERN.source}`);
    if (key.length !== KEY_BYTES) throw new CodecError(`payload codec key '${keyId}': expected ${KEY_BYTES} bytes (got ${key.length})`);
    this.key = Buffer.from(key);
  }

  static fromSource(source: CodecKeySource, env: NodeJS.ProcessEnv = process.env): AesGcmCodec {
    return new AesGcmCodec(source.keyId, loadCodecKey(source, env));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.key, iv);
      // The key id is authenticated too: swapping it on a stored payload fails decryption.
      cipher.setAAD(encoder.encode(this.keyId));
      const body = Buffer.concat([cipher.update(framePayload(payload)), cipher.final()]);
      return {
        metadata: {
          encoding: encoder.encode(ENCRYPTED_ENCODING),
          [CIPHER_METADATA]: encoder.encode(CIPHER_NAME),
          [KEY_ID_METADATA]: encoder.encode(this.keyId),
        },
        data: new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()])),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const metadata = payload.metadata ?? {};
      if (text(metadata.encoding) !== ENCRYPTED_ENCODING) return payload;
      const cipherName = text(metadata[CIPHER_METADATA]);
      const keyId = text(metadata[KEY_ID_METADATA]);
      if (cipherName !== CIPHER_NAME) throw new CodecError(`encrypted payload uses cipher '${cipherName}'; this codec decrypts ${CIPHER_NAME} only`);
      if (keyId !== this.keyId) {
        throw new CodecError(`encrypted payload has key id '${keyId}', but this process holds key '${this.keyId}': configure the key the payload was written with`);
      }
      const data = Buffer.from(payload.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new CodecError(`encrypted payload (key id '${keyId}') is truncated: ${data.length} bytes`);
      const decipher = createDecipheriv('aes-256-gcm', this.key, data.subarray(0, IV_BYTES));
      decipher.setAAD(encoder.encode(keyId));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new CodecError(
          `encrypted payload (key id '${keyId}') failed authentication: the key differs from the one it was written with, or the payload was altered`,
        );
      }
      try {
        return unframePayload(plain);
      } catch (error) {
        throw new CodecError(`encrypted payload (key id '${keyId}') decrypted to a malformed payload: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
  }
}

/**
 * The workers' view of a codec: a payload it cannot decode becomes an `UNDECODABLE_ENCODING`
 * payload carrying the reason, instead of an error that would fail the whole workflow task (a
 * signal with a foreign encrypted payload would wedge the run for good). The payload converter
 * turns it into a marker that the signal and update validators reject, and that workflow inputs
 * and activity arguments refuse (./payloadConverter.ts).
 */
export class UndecodableAsMarkerCodec implements PayloadCodec {
  constructor(private readonly inner: PayloadCodec) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.inner.encode(payloads);
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (payload) => {
        try {
          const [decoded] = await this.inner.decode([payload]);
          if (decoded === undefined) throw new CodecError('codec returned no payload');
          return decoded;
        } catch (error) {
          const reason = error instanceof Error ? error.message : String(error);
          return { metadata: { encoding: encoder.encode(UNDECODABLE_ENCODING) }, data: encoder.encode(reason) };
        }
      }),
    );
  }
}

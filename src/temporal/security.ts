/**
 * How a process reaches Temporal securely: TLS / mTLS, an API key, and the payload codec.
 *
 * Sources, first wins: command-line flags, the config's `temporal` section, then environment
 * variables (the names the `temporal` CLI uses: TEMPORAL_TLS_CA_PATH, TEMPORAL_TLS_CERT_PATH,
 * TEMPORAL_TLS_KEY_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY). Files and environment
 * variables are named, never secrets written in the config. The merged settings are validated with
 * the config's zod schemas, then the files are read and checked (PEM certificate, private key,
 * certificate matches key, not expired), so a bad setting fails before connecting with a message
 * naming the setting and the file, and never the secret.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DataConverter } from '@temporalio/common';
import type { TLSConfig } from '@temporalio/client';
import type { z } from 'zod';
import { payloadCodecSchema, temporalTlsSchema, type RunConfig } from '../config/schema';
import { moduleFile } from '../sourceFiles';
import { AesGcmCodec, CodecError, UndecodableAsMarkerCodec } from './codec';

export const TLS_ENV = {
  caFile: 'TEMPORAL_TLS_CA_PATH',
  certFile: 'TEMPORAL_TLS_CERT_PATH',
  keyFile: 'TEMPORAL_TLS_KEY_PATH',
  serverName: 'TEMPORAL_TLS_SERVER_NAME',
} as const;
export const DEFAULT_API_KEY_ENV = 'TEMPORAL_API_KEY';

/** The CLI's security flags (all optional; see `withConnectionFlags` in src/cli/main.ts). */
export interface SecurityFlags {
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  apiKeyEnv?: string;
  codecKeyId?: string;
  codecKeyFile?: string;
  codecKeyEnv?: string;
}

export interface ConnectionSecurity {
  /** undefined: plaintext. */
  tls: TLSConfig | undefined;
  apiKey: string | undefined;
  codec: AesGcmCodec | undefined;
  /** What is in use, for logs: names files and variables, never secrets. */
  summary: string;
}

export const PLAINTEXT: ConnectionSecurity = { tls: undefined, apiKey: undefined, codec: undefined, summary: 'plaintext, no API key, payloads unencrypted' };

/** A security setting is wrong: names the setting (flag / config field / variable) and the file. */
export class SecurityConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecurityConfigError';
  }
}

type TemporalSection = Pick<RunConfig['temporal'], 'tls' | 'apiKeyEnv' | 'codec'>;

function firstDefined<T>(...values: (T | undefined)[]): T | undefined {
  return values.find((value) => value !== undefined);
}

function issues(error: z.ZodError, field: string): string {
  return error.issues.map((issue) => `${[field, ...issue.path.map(String)].join('.')}: ${issue.message}`).join('; ');
}

function readSecretFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : `cannot read (${String(error)})`;
    throw new SecurityConfigError(`${what} ${file}: ${why}`);
  }
}

function certificate(file: string, what: string, nowMs: number): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readSecretFile(file, what));
  } catch (error) {
    if (error instanceof SecurityConfigError) throw error;
    throw new SecurityConfigError(`${what} ${file}: not a PEM certificate (${error instanceof Error ? error.message : String(error)})`);
  }
  if (Date.parse(cert.validTo) < nowMs) throw new SecurityConfigError(`${what} ${file}: expired on ${cert.validTo}`);
  if (Date.parse(cert.validFrom) > nowMs) throw new SecurityConfigError(`${what} ${file}: not valid before ${cert.validFrom}`);
  return cert;
}

function privateKey(file: string, what: string): { pem: Buffer; key: KeyObject } {
  const pem = readSecretFile(file, what);
  try {
    return { pem, key: createPrivateKey(pem) };
  } catch {
    // The parser's message can quote the input: say only what is wrong.
    throw new SecurityConfigError(`${what} ${file}: not a PEM private key (or it is encrypted with a passphrase, which is not supported)`);
  }
}

/**
 * Resolves and checks the security settings. `config` is the run config's `temporal` section
 * (absent for commands that take no config: status, pause, ...).
 */
export function resolveSecurity(
  config: TemporalSection | undefined,
  flags: SecurityFlags = {},
  env: NodeJS.ProcessEnv = process.env,
  nowMs: number = Date.now(),
): ConnectionSecurity {
  const summary: string[] = [];

  // --- TLS: merge the sources field by field, validate with the config's schema, read the files.
  const rawTls = {
    caFile: firstDefined(flags.tlsCa, config?.tls?.caFile, env[TLS_ENV.caFile] || undefined),
    certFile: firstDefined(flags.tlsCert, config?.tls?.certFile, env[TLS_ENV.certFile] || undefined),
    keyFile: firstDefined(flags.tlsKey, config?.tls?.keyFile, env[TLS_ENV.keyFile] || undefined),
    serverName: firstDefined(flags.tlsServerName, config?.tls?.serverName, env[TLS_ENV.serverName] || undefined),
  };
  const tlsGiven = flags.tls === true || config?.tls !== undefined || Object.values(rawTls).some((value) => value !== undefined);
  const tlsParsed = temporalTlsSchema.safeParse(rawTls);
  if (!tlsParsed.success) {
    throw new SecurityConfigError(`TLS settings (flags --tls-*, config temporal.tls, $TEMPORAL_TLS_*): ${issues(tlsParsed.error, 'temporal.tls')}`);
  }
  const tlsSettings = tlsParsed.data;

  // --- API key: the variable named by flag or config must be set; TEMPORAL_API_KEY is used if set.
  const namedKeyEnv = firstDefined(flags.apiKeyEnv, config?.apiKeyEnv);
  let apiKey: string | undefined;
  const keyEnv = namedKeyEnv ?? DEFAULT_API_KEY_ENV;
  const keyValue = env[keyEnv];
  if (keyValue !== undefined && keyValue !== '') {
    if (/[\s\p{Cc}]/u.test(keyValue)) throw new SecurityConfigError(`Temporal API key in $${keyEnv}: contains whitespace or control characters`);
    apiKey = keyValue;
    summary.push(`API key from $${keyEnv}`);
  } else if (namedKeyEnv !== undefined) {
    throw new SecurityConfigError(`Temporal API key: environment variable ${namedKeyEnv} (named by ${flags.apiKeyEnv !== undefined ? '--api-key-env' : 'temporal.apiKeyEnv'}) is not set`);
  }

  let tls: TLSConfig | undefined;
  if (tlsGiven || apiKey !== undefined) {
    // An API key is a bearer secret: never sent without TLS (the SDK's default too).
    tls = {};
    const parts: string[] = [];
    if (tlsSettings.caFile !== undefined) {
      certificate(tlsSettings.caFile, 'TLS CA certificate', nowMs);
      tls.serverRootCACertificate = readSecretFile(tlsSettings.caFile, 'TLS CA certificate');
      parts.push(`CA ${tlsSettings.caFile}`);
    } else {
      parts.push('system root CAs');
    }
    if (tlsSettings.certFile !== undefined && tlsSettings.keyFile !== undefined) {
      const cert = certificate(tlsSettings.certFile, 'TLS client certificate', nowMs);
      const key = privateKey(tlsSettings.keyFile, 'TLS client key');
      if (!cert.checkPrivateKey(key.key)) {
        throw new SecurityConfigError(`TLS client certificate ${tlsSettings.certFile} does not match the private key ${tlsSettings.keyFile}`);
      }
      tls.clientCertPair = { crt: readSecretFile(tlsSettings.certFile, 'TLS client certificate'), key: key.pem };
      parts.push(`client certificate ${tlsSettings.certFile}`);
    }
    if (tlsSettings.serverName !== undefined) {
      tls.serverNameOverride = tlsSettings.serverName;
      parts.push(`server name ${tlsSettings.serverName}`);
    }
    summary.unshift(`${tls.clientCertPair === undefined ? 'TLS' : 'mTLS'} (${parts.join(', ')})`);
  } else {
    summary.unshift('plaintext');
  }

  // --- Payload codec.
  let codec: AesGcmCodec | undefined;
  const codecFlagsGiven = flags.codecKeyId !== undefined || flags.codecKeyFile !== undefined || flags.codecKeyEnv !== undefined;
  const rawCodec = codecFlagsGiven
    ? { keyId: flags.codecKeyId ?? config?.codec?.keyId, keyFile: flags.codecKeyFile, keyEnv: flags.codecKeyEnv }
    : config?.codec;
  if (rawCodec !== undefined) {
    const parsed = payloadCodecSchema.safeParse(rawCodec);
    if (!parsed.success) {
      throw new SecurityConfigError(`payload codec settings (flags --codec-key-*, config temporal.codec): ${issues(parsed.error, 'temporal.codec')}`);
    }
    try {
      codec = AesGcmCodec.fromSource(parsed.data, env);
    } catch (error) {
      if (error instanceof CodecError) throw new SecurityConfigError(error.message);
      throw error;
    }
    summary.push(`payloads encrypted (AES-256-GCM, key id '${codec.keyId}' from ${parsed.data.keyFile ?? `$${parsed.data.keyEnv}`})`);
  } else {
    summary.push('payloads unencrypted');
  }
  return { tls, apiKey, codec, summary: summary.join(', ') };
}

/** Options for `Connection.connect` / `NativeConnection.connect`. */
export function connectionOptions(security: ConnectionSecurity): { tls?: TLSConfig; apiKey?: string } {
  return {
    ...(security.tls === undefined ? {} : { tls: security.tls }),
    ...(security.apiKey === undefined ? {} : { apiKey: security.apiKey }),
  };
}

/** The data converter for clients: the codec when one is configured (a payload it cannot decode is an error). */
export function dataConverter(security: ConnectionSecurity): DataConverter | undefined {
  return security.codec === undefined ? undefined : { payloadCodecs: [security.codec] };
}

/** The payload converter module (also bundled into the workflow sandbox). */
export const PAYLOAD_CONVERTER_PATH = moduleFile(__dirname, 'payloadConverter');

/**
 * The data converter for workers: a payload that cannot be decoded becomes a marker value that
 * validation rejects, never an error that fails a workflow task (./payloadConverter.ts).
 */
export function workerDataConverter(security: ConnectionSecurity): DataConverter {
  return {
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    ...(security.codec === undefined ? {} : { payloadCodecs: [new UndecodableAsMarkerCodec(security.codec)] }),
  };
}

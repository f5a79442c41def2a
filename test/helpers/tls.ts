/**
 * Throwaway TLS material made with the system's `openssl` (a CA, a server certificate for
 * localhost / 127.0.0.1, a client certificate), and an mTLS-terminating proxy in front of a
 * Temporal dev server: `temporal server start-dev` (CLI 1.9.1) has no TLS options, so the tests
 * put a Node TLS server that demands a client certificate signed by the CA between the SDK and the
 * real server, and forward the decrypted gRPC (HTTP/2) stream to it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

export interface TlsFiles {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA with a server and a client certificate (v3, as rustls requires), valid for a day. */
export function makeTlsFiles(dir: string, name = 'test'): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const file = (suffix: string) => path.join(dir, `${name}-${suffix}`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '1', '-subj', `/CN=${name}-ca`], dir);
  for (const [who, ext, subject] of [
    ['server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n', '/CN=localhost'],
    ['client', 'extendedKeyUsage=clientAuth\n', `/CN=${name}-client`],
  ] as const) {
    writeFileSync(file(`${who}.ext`), ext);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file(`${who}.key`), '-out', file(`${who}.csr`), '-subj', subject], dir);
    openssl(
      ['x509', '-req', '-in', file(`${who}.csr`), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file(`${who}.pem`), '-days', '1', '-extfile', file(`${who}.ext`)],
      dir,
    );
  }
  return {
    dir,
    caFile: file('ca.pem'),
    serverCertFile: file('server.pem'),
    serverKeyFile: file('server.key'),
    clientCertFile: file('client.pem'),
    clientKeyFile: file('client.key'),
  };
}

export interface MtlsProxy {
  address: string;
  /** TLS handshakes refused (no or untrusted client certificate). */
  refusedHandshakes(): number;
  close(): Promise<void>;
}

/** Terminates mTLS (client certificate required, signed by `files`' CA) and forwards to `upstream`. */
export async function startMtlsProxy(files: TlsFiles, upstream: string): Promise<MtlsProxy> {
  const [host, port] = upstream.split(':') as [string, string];
  const sockets = new Set<net.Socket>();
  let refused = 0;
  const server = tls.createServer(
    {
      key: readFileSync(files.serverKeyFile),
      cert: readFileSync(files.serverCertFile),
      ca: readFileSync(files.caFile),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      const back = net.connect(Number(port), host);
      sockets.add(socket).add(back);
      socket.pipe(back).pipe(socket);
      const end = () => {
        socket.destroy();
        back.destroy();
      };
      socket.on('error', end).on('close', end);
      back.on('error', end).on('close', end);
    },
  );
  server.on('tlsClientError', () => {
    refused += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${address.port}`,
    refusedHandshakes: () => refused,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

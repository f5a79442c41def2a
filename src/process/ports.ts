/**
 * Free TCP ports for servers this project starts (the Temporal dev server and its UI, engines).
 *
 * A port is free when probed and taken when bound, so something else can take it in between. The
 * commonest taker is not another server but any outgoing connection: the kernel gives each one a
 * source port from its ephemeral range, which is also where `listen(0)` picks. On a machine busy
 * with connections (a test suite, a pipeline) a port picked by `listen(0)` is soon someone's source
 * port. Ports are therefore picked at random below the ephemeral range, where the kernel never
 * assigns one by itself; only another explicit pick can collide there, and the callers that start
 * servers retry those (src/temporal/devServer.ts). Below 32768 also suits the Temporal server,
 * which stores membership ports as SMALLINT. A host whose ephemeral range starts low leaves no
 * such room: there the kernel picks, as `listen(0)` always did.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port picked: above the well-known and most registered service ports. */
const LOWEST_PICKED_PORT = 20_000;
/** Highest port picked when the kernel's ephemeral range is unknown (IANA's range starts at 49152; Linux's at 32768). */
const HIGHEST_PICKED_PORT_DEFAULT = 32_767;
const PICK_ATTEMPTS = 64;
/** Fewer ports than this below the ephemeral range: let the kernel pick instead. */
const MIN_PICKED_RANGE = 1_000;

/** The kernel's first ephemeral port (Linux); undefined where it cannot be read. */
function ephemeralRangeStart(): number | undefined {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const port = Number(low);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `port` on `host` can be bound right now. */
export async function portBindable(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * The range ports are picked from: [LOWEST_PICKED_PORT, first ephemeral port), or undefined when
 * the kernel's ephemeral range leaves fewer than MIN_PICKED_RANGE ports below it (a host tuned to
 * `1024 65535`): then no range is free of outgoing connections, and the kernel picks.
 */
export function pickedPortRange(ephemeralStart = ephemeralRangeStart()): { lowest: number; highest: number } | undefined {
  const highest = ephemeralStart === undefined ? HIGHEST_PICKED_PORT_DEFAULT : ephemeralStart - 1;
  return highest - LOWEST_PICKED_PORT < MIN_PICKED_RANGE ? undefined : { lowest: LOWEST_PICKED_PORT, highest };
}

/** Ports this process handed out: two picks in a row never return the same one. */
const handedOut = new Set<number>();

/**
 * A port on `host` that was bindable when probed and not handed out before by this process,
 * chosen at random below the ephemeral range (or by the kernel where there is no such range).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const range = pickedPortRange();
  for (let attempt = 0; attempt < PICK_ATTEMPTS; attempt++) {
    const port = range === undefined ? await kernelPickedPort(host) : range.lowest + Math.floor(Math.random() * (range.highest - range.lowest + 1));
    if (handedOut.has(port) || !(await portBindable(port, host))) continue;
    handedOut.add(port);
    return port;
  }
  const where = range === undefined ? "from the kernel's ephemeral range" : `from ${range.lowest}-${range.highest}`;
  throw new Error(`no bindable port on ${host} in ${PICK_ATTEMPTS} picks ${where}`);
}

/** A port the kernel picks (`listen(0)`), closed again at once. */
function kernelPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = address !== null && typeof address === 'object' ? address.port : undefined;
      server.close(() => (port === undefined ? reject(new Error(`could not read the port the kernel picked on ${host}`)) : resolve(port)));
    });
  });
}

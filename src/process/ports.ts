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
 * which stores membership ports as SMALLINT.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Lowest port picked: above the well-known and most registered service ports. */
const LOWEST_PICKED_PORT = 20_000;
/** Highest port picked when the kernel's ephemeral range is unknown (IANA's range starts at 49152; Linux's at 32768). */
const HIGHEST_PICKED_PORT_DEFAULT = 32_767;
const PICK_ATTEMPTS = 64;

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

/** The range ports are picked from: [LOWEST_PICKED_PORT, first ephemeral port). */
export function pickedPortRange(): { lowest: number; highest: number } {
  const ephemeralStart = ephemeralRangeStart();
  const highest = ephemeralStart === undefined ? HIGHEST_PICKED_PORT_DEFAULT : ephemeralStart - 1;
  if (highest - LOWEST_PICKED_PORT < 1_000) {
    throw new Error(
      `the kernel's ephemeral port range starts at ${ephemeralStart}, leaving fewer than 1000 ports above ${LOWEST_PICKED_PORT} to pick servers' ports from`,
    );
  }
  return { lowest: LOWEST_PICKED_PORT, highest };
}

/** A port on `host` that was bindable when probed, chosen at random below the ephemeral range. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const { lowest, highest } = pickedPortRange();
  for (let attempt = 0; attempt < PICK_ATTEMPTS; attempt++) {
    const port = lowest + Math.floor(Math.random() * (highest - lowest + 1));
    if (await portBindable(port, host)) return port;
  }
  throw new Error(`no bindable port on ${host} in ${PICK_ATTEMPTS} random picks from ${lowest}-${highest}`);
}

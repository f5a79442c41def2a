/**
 * A Temporal front end's address, `host:port`: a host name, an IPv4 address or a bracketed IPv6
 * address, and a port in 1-65535. Checked where an address enters (the config, a flag, the
 * environment), so a typo is a usage error, not a connection that is retried until it times out.
 */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/** What is wrong with `text` as a host:port address, or undefined when nothing is. */
export function addressProblem(text: string): string | undefined {
  const match = HOST_PORT.exec(text);
  if (match === null) return `expected host:port (e.g. localhost:7233), got ${JSON.stringify(text)}`;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) return `the port of ${JSON.stringify(text)} is outside 1-65535`;
  return undefined;
}

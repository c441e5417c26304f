/** Split "host:port" or "[v6]:port" into parts; the host loses its brackets. */
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  let host = address.slice(0, i);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(i + 1)) };
}

/** Loopback by name or literal: localhost, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

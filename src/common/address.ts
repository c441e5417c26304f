import { isIP, isIPv4, isIPv6 } from 'node:net';

/**
 * "host:port", with an IPv6 host in brackets ("[::1]:8080"): the inverse of splitAddress, for
 * addresses, authorities and origins built from a host and a port (a bound socket's, an endpoint's).
 */
export function formatAddress(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

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

/** RFC 3986 reg-name (an IPv4 address is one too): unreserved, pct-encoded and sub-delims. */
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;

/**
 * Is this a syntactically valid `host[:port]` authority (a Host header, HTTP/2 `:authority`, or
 * the authority of an absolute-form target)? host: an RFC 3986 reg-name or IPv4 address, or a
 * bracketed IPv6 address; port, when present: 1-65535. No userinfo, no path, no whitespace.
 */
export function isValidAuthority(a: string): boolean {
  let port: string;
  if (a.charCodeAt(0) === 91 /* '[' */) {
    const close = a.indexOf(']');
    if (close < 0 || !isIPv6(a.slice(1, close))) return false;
    if (close === a.length - 1) return true;
    if (a.charCodeAt(close + 1) !== 58 /* ':' */) return false;
    port = a.slice(close + 2);
  } else {
    const colon = a.indexOf(':');
    if (!REG_NAME.test(colon === -1 ? a : a.slice(0, colon))) return false;
    if (colon === -1) return true;
    port = a.slice(colon + 1);
  }
  if (port.length === 0 || port.length > 5) return false;
  let n = 0;
  for (let i = 0; i < port.length; i++) {
    const d = port.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    n = n * 10 + d;
  }
  return n >= 1 && n <= 65535;
}

/**
 * Is this a DNS server as node:dns `setServers` takes it: an IPv4 or IPv6 literal, "ipv4:port" or
 * "[ipv6]:port" (a bracketed IPv6 without a port too)? Port 1-65535; 53 when absent.
 */
export function isValidDnsServer(server: string): boolean {
  if (isIP(server)) return true;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(server);
  const withPort = bracketed ?? /^([^:]+):(\d{1,5})$/.exec(server);
  if (!withPort) return false;
  const [, host, port] = withPort;
  const portOk = port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
  return portOk && (bracketed ? isIPv6(host) : isIPv4(host));
}

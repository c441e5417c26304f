import { isIP } from 'node:net';
import type { DownstreamRequest } from '../listener/downstream.js';

/* Facts every stage may read of the downstream request: its request id, the peer and the client address. */

/**
 * The client's x-request-id, or ''. An exchange (filters) gets a new one when absent, so the
 * filters' logs and the access log agree; a forwarded request gets one with its upstream headers.
 */
export function clientRequestId(req: DownstreamRequest): string {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' ? id : '';
}

/** The TCP peer's address, IPv4-mapped prefix removed: what the gateway appends to X-Forwarded-For. */
export function peerIp(req: DownstreamRequest): string {
  return unmapped(req.socket?.remoteAddress ?? '');
}

function unmapped(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/**
 * The client address for rate-limit keys, RBAC `sourceCidr` and source-IP hashing. At the edge
 * (`trustForwardedHeaders: false`) it is the peer: X-Forwarded-For is client input. Behind a trusted
 * proxy (`true`) it is the right-most X-Forwarded-For entry, the address that proxy saw; entries to
 * its left were written by parties we cannot vouch for. Falls back to the peer when the header is
 * absent or its last entry is not an IP address.
 */
export function clientIp(req: DownstreamRequest, trustForwarded: boolean): string {
  const peer = peerIp(req);
  if (!trustForwarded) return peer;
  const h = req.headers['x-forwarded-for'];
  const xff = Array.isArray(h) ? h[h.length - 1] : h;
  if (!xff) return peer;
  const last = unmapped(xff.slice(xff.lastIndexOf(',') + 1).trim());
  return isIP(last) ? last : peer;
}

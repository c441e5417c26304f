import { errors } from 'undici';
import type { ErrorCode } from '../common/errors.js';

const TLS_CODES = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
]);
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * A malformed upstream response. undici 7 reports it as an HTTPParserError whose `code` is undefined
 * (it looks up llhttp's numeric error in a name -> number table), so the class is the signal, not the
 * code; undici's `instanceof` checks a Symbol.for brand, so it holds across undici copies.
 * Node's own parser (and older undici) do set an HPE_* code.
 */
function isMalformedResponse(e: { code?: string; cause?: unknown }, code: string, causeCode: string): boolean {
  return (
    e instanceof errors.HTTPParserError ||
    e?.cause instanceof errors.HTTPParserError ||
    code.startsWith('HPE_') ||
    causeCode.startsWith('HPE_') ||
    code === 'UND_ERR_INFO' ||
    code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'
  );
}

/** Classify an upstream failure into the error catalogue (one place for every undici/socket code). */
export function classifyUpstreamError(err: unknown): ErrorCode {
  const e = err as { code?: string; cause?: { code?: string } };
  const code = e?.code ?? '';
  const causeCode = e?.cause?.code ?? '';
  if (TIMEOUT_CODES.has(code)) return 'upstream_timeout';
  if (CONNECT_CODES.has(code) || CONNECT_CODES.has(causeCode)) return 'upstream_connect_failure';
  if (TLS_CODES.has(code) || TLS_CODES.has(causeCode) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS'))
    return 'upstream_tls_error';
  if (isMalformedResponse(e, code, causeCode)) return 'upstream_protocol_error';
  return 'upstream_reset';
}

/**
 * Did the upstream close the connection before any byte of this response, on a connection that had
 * carried an earlier response (undici's "other side closed" with bytes read before), or reset it
 * (ECONNRESET / EPIPE: undici does not say whether that connection was reused)? That is the
 * keep-alive race: the upstream closed an idle connection just as the gateway sent the next request.
 */
export function closedBeforeResponse(err: unknown): boolean {
  const e = err as { code?: string; socket?: { bytesRead?: number } };
  if (e?.code === 'UND_ERR_SOCKET') return (e.socket?.bytesRead ?? 0) > 0;
  return e?.code === 'ECONNRESET' || e?.code === 'EPIPE';
}

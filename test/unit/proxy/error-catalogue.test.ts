import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes } from '../../../src/common/errors.js';
import { classifyUpstreamError } from '../../../src/proxy/error-map.js';
import { REPO } from '../../helpers/gateway.js';

/** The docs/config.md paragraph that lists every x-meridian-error code with its status. */
function documentedCatalogue(): Record<string, number> {
  const md = readFileSync(join(REPO, 'docs/config.md'), 'utf8');
  const start = md.indexOf('Every gateway-generated error carries');
  expect(start).toBeGreaterThan(-1);
  const paragraph = md.slice(start, md.indexOf('\n\n', start));
  return Object.fromEntries([...paragraph.matchAll(/`([a-z_]+)`\s+(\d{3})/g)].map((m) => [m[1], Number(m[2])]));
}

describe('the error catalogue', () => {
  it('is documented in docs/config.md code for code, status for status', () => {
    expect(documentedCatalogue()).toEqual({ ...ErrorCodes });
  });

  it('classifies an upstream parser error without an HPE code as upstream_protocol_error, a bare socket error as upstream_reset', async () => {
    const { errors } = await import('undici');
    expect(classifyUpstreamError(new errors.HTTPParserError('Response does not match the HTTP/1.1 protocol'))).toBe(
      'upstream_protocol_error',
    );
    expect(classifyUpstreamError(Object.assign(new Error('parse'), { code: 'HPE_INVALID_CONSTANT' }))).toBe(
      'upstream_protocol_error',
    );
    expect(classifyUpstreamError(new errors.SocketError('other side closed'))).toBe('upstream_reset');
    expect(classifyUpstreamError(null)).toBe('upstream_reset');
  });
});

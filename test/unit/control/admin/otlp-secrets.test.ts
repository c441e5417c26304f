import { describe, expect, it } from 'vitest';
import { REDACTED, redactSecrets, withSecrets } from '../../../../src/control/admin/secrets.js';

const config = (key: string) => ({
  admin: { address: '127.0.0.1:0' },
  gateway: { tracing: { otlp: { endpoint: 'http://c:4318/v1/traces', headers: { 'x-api-key': key } } } },
});

describe('OTLP collector headers as admin API secrets', () => {
  it('shows the collector headers redacted and keeps them on a write that sends the placeholder back', () => {
    const current = config('s3cret');
    const shown = redactSecrets(current);
    expect(shown.gateway.tracing.otlp.headers['x-api-key']).toBe(REDACTED);
    expect(current.gateway.tracing.otlp.headers['x-api-key']).toBe('s3cret');
    const written = withSecrets(structuredClone(shown), current);
    expect(written.gateway.tracing.otlp.headers['x-api-key']).toBe('s3cret');
  });
});

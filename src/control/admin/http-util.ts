import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { checkBodyShape, checkYamlDepth } from './body-shape.js';
import { ApiError } from '../api-error.js';

const MAX_BODY = 10 * 1024 * 1024;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * Read a JSON (or YAML, by content type) request body, bounded in size and in shape (nesting depth,
 * no `__proto__` key: see body-shape.ts). The admin API and the hub's API both read bodies here.
 */
export async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new ApiError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  const yaml = /yaml/.test(req.headers['content-type'] ?? '');
  const tooDeep = yaml ? checkYamlDepth(text) : undefined;
  if (tooDeep) throw new ApiError(400, 'malformed request body', { errors: [tooDeep] });
  let body: unknown;
  try {
    body = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, 'malformed request body', { errors: [{ path: '(body)', message: (e as Error).message }] });
  }
  const refused = checkBodyShape(body);
  if (refused) throw new ApiError(400, 'malformed request body', { errors: [refused] });
  return body;
}

import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { sendJson } from './http-util.js';

/**
 * The gateway UI's files, by the name they are served under (`/ui/<name>`). A fixed list, not a
 * directory listing: no request path ever reaches the file system, so `..` and friends cannot escape.
 */
const UI_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/**
 * The files sit next to this module: `src/control/admin/ui/` when run from source (tests), and
 * `dist/control/admin/ui/` after `npm run build` (which copies them; tsc copies only TypeScript).
 */
const UI_DIR = new URL('./ui/', import.meta.url);

/**
 * Same-origin only: the page loads nothing from elsewhere (no CDN, machines have no internet) and
 * sends its fetches to the admin API that served it. No inline script, so an injected endpoint
 * label cannot run as code even if some rendering path forgot to escape it.
 */
const UI_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const cache = new Map<string, Buffer>();

/**
 * `GET /ui/...` (already authenticated, like every admin path): the page, its script and its style.
 * `/ui` redirects to `/ui/` so the page's relative URLs resolve under it.
 */
export async function serveUi(res: ServerResponse, method: string | undefined, pathname: string): Promise<void> {
  if (method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed', message: 'the UI is read-only' });
  const rest = pathname.split('/').filter(Boolean).slice(1);
  if (rest.length === 0 && !pathname.endsWith('/')) {
    res.writeHead(308, { location: '/ui/', 'cache-control': 'no-store' });
    return void res.end();
  }
  const name = rest.length === 0 ? 'index.html' : rest.join('/');
  const type = UI_FILES[name];
  if (!type) return sendJson(res, 404, { error: 'not_found', message: `no UI file ${name}` });
  let body = cache.get(name);
  if (!body) {
    body = await readFile(new URL(name, UI_DIR));
    cache.set(name, body);
  }
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...UI_HEADERS });
  res.end(body);
}

import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { sendJson } from './http-util.js';

/** Serves one UI under `/ui/`: a request that is already authenticated, its method and URL path. */
export type UiFileServer = (res: ServerResponse, method: string | undefined, pathname: string) => Promise<void>;

const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * The gateway UI's directory: `src/control/admin/ui/` when run from source (tests), and
 * `dist/control/admin/ui/` after `npm run build` (which copies it; tsc copies only TypeScript).
 */
const GATEWAY_UI_DIR = new URL('./ui/', import.meta.url);

/** The helpers and the stylesheet both UIs load (the hub's UI serves them from the gateway's directory). */
export const SHARED_UI_FILES = {
  'common.js': new URL('common.js', GATEWAY_UI_DIR),
  'style.css': new URL('style.css', GATEWAY_UI_DIR),
};

/**
 * Same-origin only: the page loads nothing from elsewhere (no CDN, machines have no internet) and
 * sends its fetches to the API that served it. No inline script, so an injected endpoint label
 * cannot run as code even if some rendering path forgot to escape it.
 */
const UI_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * `GET /ui/...` for the files of `files`, by the name they are served under (`/ui/<name>`). A fixed
 * list, not a directory listing: no request path ever reaches the file system, so `..` and friends
 * cannot escape. `/ui` redirects to `/ui/` so the page's relative URLs resolve under it.
 */
export function uiFileServer(files: Record<string, URL>): UiFileServer {
  const cache = new Map<string, Buffer>();
  return async (res, method, pathname) => {
    if (method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed', message: 'the UI is read-only' });
    const rest = pathname.split('/').filter(Boolean).slice(1);
    if (rest.length === 0 && !pathname.endsWith('/')) {
      res.writeHead(308, { location: '/ui/', 'cache-control': 'no-store' });
      return void res.end();
    }
    const name = rest.length === 0 ? 'index.html' : rest.join('/');
    const file = Object.hasOwn(files, name) ? files[name] : undefined;
    if (!file) return sendJson(res, 404, { error: 'not_found', message: `no UI file ${name}` });
    let body = cache.get(name);
    if (!body) {
      body = await readFile(file);
      cache.set(name, body);
    }
    const type = CONTENT_TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream';
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...UI_HEADERS });
    res.end(body);
  };
}

/** The gateway UI on the admin port (docs/ui.md). */
export const serveUi = uiFileServer({
  'index.html': new URL('index.html', GATEWAY_UI_DIR),
  'app.js': new URL('app.js', GATEWAY_UI_DIR),
  ...SHARED_UI_FILES,
});

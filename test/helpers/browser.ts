import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { waitFor } from './gateway.js';

/** Debian's chromium (apt-get install chromium; .ci/run installs it). Never a downloaded browser. */
export const CHROMIUM = '/usr/bin/chromium';
export const HAS_CHROMIUM = existsSync(CHROMIUM);

export interface UiBrowser {
  browser: Browser;
  page: Page;
  /** Console errors and uncaught page errors, in order: a UI test expects none. */
  consoleErrors: string[];
}

/**
 * Headless Chromium with one page whose requests all carry `Authorization: Bearer <token>`, as a
 * header-setting proxy or browser extension would in front of a UI behind a bearer token.
 */
export async function openUiBrowser(token: string, viewport: { width: number; height: number }): Promise<UiBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${token}` }, viewport });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (m) => void (m.type() === 'error' && consoleErrors.push(m.text())));
  page.on('pageerror', (e) => void consoleErrors.push(e.message));
  return { browser, page, consoleErrors };
}

/**
 * Whether the first element matching `selector` is still the same DOM node after two more poll
 * rounds (`body[data-polls]`, counted by the UIs' common.js): a poll with unchanged data must leave
 * the rows alone, or 1,000 rows are rebuilt every few seconds.
 */
export async function survivesPolls(page: Page, selector: string): Promise<boolean> {
  type Marked = Element & { survivesPollsMarker?: boolean };
  await page.evaluate((s) => void ((document.querySelector(s) as Marked).survivesPollsMarker = true), selector);
  const polls = async () => Number(await page.locator('body').getAttribute('data-polls'));
  const start = await polls();
  await waitFor(async () => (await polls()) >= start + 2, 15_000, 100);
  return page.evaluate((s) => (document.querySelector(s) as Marked | null)?.survivesPollsMarker === true, selector);
}

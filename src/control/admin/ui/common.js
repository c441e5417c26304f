// Helpers both UIs (the gateway's and the hub's) load before their own app.js: classic scripts
// share top-level names, so there is no module loader and no build step.
'use strict';

const byId = (id) => document.getElementById(id);

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Every value from the API passes through here before it meets innerHTML. */
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (res.status === 401 || res.status === 403)
    throw new Error(`${path}: the API answered ${res.status}: this page needs the API token (Authorization: Bearer) on every request`);
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

async function getText(path) {
  const res = await fetch(path, { cache: 'no-store' });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.text();
}

/** Replace a tbody's rows only when their markup changed (polls mostly bring the same data). */
function setRows(tbody, html) {
  if (tbody.dataset.rendered === html) return;
  tbody.innerHTML = html;
  tbody.dataset.rendered = html;
}

function showProblem(message) {
  const box = byId('problem');
  box.hidden = !message;
  box.textContent = message ?? '';
}

/**
 * Run `pollers` now and then every `intervalMs` after the last round ends (never two rounds at once).
 * A failing poller shows its message and leaves the others drawn; `body[data-polls]` counts rounds
 * so a test can wait for the next one.
 */
function startPolling(intervalMs, pollers) {
  const round = async () => {
    const results = await Promise.allSettled(pollers.map((poll) => poll()));
    const failed = results.find((r) => r.status === 'rejected');
    showProblem(failed ? String(failed.reason?.message ?? failed.reason) : undefined);
    document.body.dataset.polls = String(Number(document.body.dataset.polls ?? 0) + 1);
    setTimeout(round, intervalMs);
  };
  void round();
}

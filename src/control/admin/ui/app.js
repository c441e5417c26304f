// The gateway UI: read-only views over the admin API's JSON (same origin, same authentication).
// No framework and no build step: each view renders its table with one innerHTML assignment per
// poll, and only when the data it shows changed, so a 1,000-endpoint cluster is one string build,
// not 1,000 DOM updates.
'use strict';

const POLL_MS = 3000;
/** How far back the rate chart reaches. */
const WINDOW_MS = 5 * 60 * 1000;
/** Cluster statuses asked for every poll: each is a round trip to every worker. */
const MAX_POLLED_CLUSTERS = 50;
/** Past this many edits the line diff stops aligning and shows the changed middle as replaced. */
const MAX_DIFF_EDITS = 2000;
const DIFF_CONTEXT = 3;

// ---- header -------------------------------------------------------------------------------------

async function pollReady() {
  // /ready answers 503 while draining: still JSON worth showing.
  const res = await fetch('../ready', { cache: 'no-store' });
  const r = await res.json();
  const state = r.draining ? 'draining' : r.ready ? 'ready' : 'not ready';
  byId('gateway-state').textContent = `${state} · config version ${r.version} · ${r.workers} worker(s)`;
}

// ---- traffic ------------------------------------------------------------------------------------

/** [time ms, requests/s, 5xx/s] per poll, oldest first. */
const rateSamples = [];
let lastTotals;

/** Sum meridian_downstream_rq_total over routes: all classes, and the 5xx class alone. */
function downstreamTotals(metricsText) {
  let requests = 0;
  let errors = 0;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('meridian_downstream_rq_total')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    requests += value;
    if (line.includes('status_class="5xx"')) errors += value;
  }
  return { requests, errors };
}

async function pollRates() {
  const totals = { at: Date.now(), ...downstreamTotals(await getText('../metrics')) };
  const before = lastTotals;
  lastTotals = totals;
  if (!before) return drawRates();
  const seconds = (totals.at - before.at) / 1000;
  // A restarted worker starts its counters again: a negative step is a reset, not negative traffic.
  const requests = Math.max(0, totals.requests - before.requests) / seconds;
  const errors = Math.max(0, totals.errors - before.errors) / seconds;
  rateSamples.push([totals.at, requests, errors]);
  while (rateSamples.length && rateSamples[0][0] < totals.at - WINDOW_MS) rateSamples.shift();
  byId('rate-requests').textContent = requests.toFixed(1);
  byId('rate-errors').textContent = errors.toFixed(1);
  drawRates();
}

/** A round axis maximum: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function drawRates() {
  const svg = byId('rate-chart');
  const width = 800;
  const height = 180;
  const top = 8;
  const bottom = 18;
  const now = Date.now();
  const max = niceMax(Math.max(0, ...rateSamples.map((s) => s[1])));
  const x = (t) => ((t - (now - WINDOW_MS)) / WINDOW_MS) * width;
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const line = (i) => rateSamples.map((s) => `${x(s[0]).toFixed(1)},${y(s[i]).toFixed(1)}`).join(' ');
  let html = '';
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f).toFixed(1);
    html += `<line class="grid" x1="0" x2="${width}" y1="${yy}" y2="${yy}"></line><text x="4" y="${Number(yy) - 2}">${esc(max * f)}/s</text>`;
  }
  for (const minutesAgo of [5, 4, 3, 2, 1]) html += `<text x="${x(now - minutesAgo * 60000) + 2}" y="${height - 4}">-${minutesAgo}m</text>`;
  html += `<polyline class="requests" points="${line(1)}"></polyline><polyline class="errors" points="${line(2)}"></polyline>`;
  svg.innerHTML = html;
  svg.dataset.samples = String(rateSamples.length);
}

// ---- routes -------------------------------------------------------------------------------------

function describeMatch(match = {}) {
  const parts = [];
  const p = match.path ?? {};
  if (p.exact !== undefined) parts.push(`path = ${p.exact}`);
  if (p.prefix !== undefined) parts.push(`path ${p.prefix}*`);
  if (p.regex !== undefined) parts.push(`path ~ ${p.regex}`);
  if (match.methods?.length) parts.push(match.methods.join('|'));
  for (const h of match.headers ?? []) parts.push(`header ${h.name}`);
  for (const q of match.query ?? []) parts.push(`query ${q.name}`);
  return parts.join(', ') || 'everything';
}

function describeTarget(route) {
  if (route.cluster) return `cluster ${route.cluster}`;
  if (route.weightedClusters) return route.weightedClusters.map((w) => `${w.cluster} (${w.weight})`).join(', ');
  if (route.directResponse) return `direct response ${route.directResponse.status}`;
  if (route.redirect) return `redirect ${route.redirect.status ?? ''}`;
  return '';
}

async function pollRoutes() {
  const routes = await getJson('../routes');
  byId('route-count').textContent = `(${routes.length})`;
  setRows(
    byId('route-rows'),
    routes
      .map(
        (r) =>
          `<tr><td>${esc(r.name)}</td><td>${esc((r.match?.hosts ?? ['*']).join(', '))}</td><td>${esc(describeMatch(r.match))}</td><td>${esc(describeTarget(r))}</td></tr>`,
      )
      .join(''),
  );
}

// ---- clusters -----------------------------------------------------------------------------------

let selectedCluster = new URLSearchParams(location.search).get('cluster') ?? undefined;

const isEjected = (e) => e.outlier?.ejected === true || e.flags.includes('failed_outlier_check');
const isDraining = (e) => e.flags.includes('draining');

function clusterRow(cluster, status) {
  const name = esc(cluster.name);
  const selected = cluster.name === selectedCluster ? ' class="selected"' : '';
  const policy = esc(cluster.lb?.policy ?? 'round_robin');
  if (!status)
    return `<tr${selected} data-cluster="${name}"><td><a href="?cluster=${encodeURIComponent(cluster.name)}#clusters">${name}</a></td><td>${policy}</td><td class="num">${cluster.endpoints?.length ?? '–'}</td><td colspan="7" class="muted">not polled</td></tr>`;
  const eps = status.endpoints;
  const count = (f) => eps.filter(f).length;
  const lb = status.lb ?? {};
  const loads = (lb.healthyPriorityLoad ?? []).map((h, i) => `P${i}: ${h}% / ${lb.degradedPriorityLoad?.[i] ?? 0}%`).join(', ');
  const panic = lb.totalPanic ? 'total' : (lb.panic ?? []).some(Boolean) ? (lb.panic ?? []).map((p, i) => (p ? `P${i}` : '')).filter(Boolean).join(' ') : 'no';
  return `<tr${selected} data-cluster="${name}"><td><a href="?cluster=${encodeURIComponent(cluster.name)}#clusters">${name}</a></td><td>${policy}</td><td class="num">${eps.length}</td><td class="num healthy">${count((e) => e.health === 'healthy')}</td><td class="num degraded">${count((e) => e.health === 'degraded')}</td><td class="num unhealthy">${count((e) => e.health === 'unhealthy')}</td><td class="num">${count(isEjected)}</td><td class="num">${count(isDraining)}</td><td>${esc(loads)}</td><td>${esc(panic)}</td></tr>`;
}

function locality(l = {}) {
  return [l.region, l.zone, l.subzone].filter(Boolean).join(' / ') || '–';
}

function endpointRow(e) {
  const ejected = isEjected(e);
  const ejectedText = ejected
    ? `ejected${e.outlier?.ejectedForMs ? ` (${Math.round(e.outlier.ejectedForMs / 1000)}s)` : ''}`
    : e.outlier
      ? `no (${e.outlier.ejections ?? 0} before)`
      : 'no';
  return `<tr data-address="${esc(e.address)}" data-health="${esc(e.health)}" data-ejected="${ejected}"><td>${esc(e.address)}</td><td class="${esc(e.health)}">${esc(e.health)}</td><td${ejected ? ' class="ejected"' : ''}>${esc(ejectedText)}</td><td>${isDraining(e) ? 'draining' : 'no'}</td><td>${esc(e.flags.join(', '))}</td><td class="num">${esc(e.priority ?? 0)}</td><td class="num">${esc(e.weight ?? 1)}</td><td>${esc(locality(e.locality))}</td><td>${esc(e.activeHealthCheck ?? '–')}</td><td class="num">${esc(e.activeRequests)}</td><td class="num">${esc(e.requests)}</td><td class="num">${esc(e.errors)}</td></tr>`;
}

function renderEndpoints(status) {
  const onlyUnhealthy = byId('only-unhealthy').checked;
  const filter = byId('address-filter').value.trim();
  const all = status?.endpoints ?? [];
  const shown = all.filter((e) => (!onlyUnhealthy || e.health !== 'healthy' || isEjected(e)) && (!filter || e.address.includes(filter)));
  byId('endpoint-count').textContent = status ? `${shown.length} of ${all.length} shown` : '';
  setRows(byId('endpoint-rows'), shown.map(endpointRow).join(''));
}

let lastClusterStatuses = new Map();

function fillClusterSelect(names) {
  const select = byId('cluster-select');
  const options = names.map((n) => `<option${n === selectedCluster ? ' selected' : ''}>${esc(n)}</option>`).join('');
  if (select.dataset.rendered !== options) {
    select.innerHTML = options;
    select.dataset.rendered = options;
  }
}

async function pollClusters() {
  const clusters = await getJson('../clusters');
  if (!clusters.some((c) => c.name === selectedCluster)) selectedCluster = clusters[0]?.name;
  const polled = clusters.slice(0, MAX_POLLED_CLUSTERS).map((c) => c.name);
  if (selectedCluster && !polled.includes(selectedCluster)) polled.push(selectedCluster);
  const statuses = await Promise.all(
    polled.map((name) =>
      getJson(`../clusters/${encodeURIComponent(name)}/status`).catch((e) => {
        // A cluster removed between the two requests: skip it this time round.
        if (e instanceof AdminRefused) throw e;
        return undefined;
      }),
    ),
  );
  lastClusterStatuses = new Map(statuses.filter(Boolean).map((s) => [s.name, s]));
  byId('cluster-count').textContent = `(${clusters.length}${clusters.length > MAX_POLLED_CLUSTERS ? `, live status of the first ${MAX_POLLED_CLUSTERS} and the selected one` : ''})`;
  setRows(byId('cluster-rows'), clusters.map((c) => clusterRow(c, lastClusterStatuses.get(c.name))).join(''));
  fillClusterSelect(clusters.map((c) => c.name));
  renderEndpoints(lastClusterStatuses.get(selectedCluster));
}

// ---- config versions and their diff -------------------------------------------------------------

/** Stored versions never change: each is fetched once. */
const versionText = new Map();

async function configText(version) {
  if (!versionText.has(version)) {
    const v = await getJson(`../config/versions/${version}`);
    versionText.set(version, canonicalJson(v.config).split('\n'));
  }
  return versionText.get(version);
}

/**
 * Line diff: the common head and tail are cut first (a config change touches a few lines), then
 * the middle is aligned with Myers' algorithm, which costs time in proportion to the size times the
 * number of edits. A middle needing more than MAX_DIFF_EDITS edits is shown as removed then added.
 * Returns [kind, line] with kind ' ', '-' or '+'.
 */
function lineDiff(a, b) {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const midA = a.slice(head, a.length - tail);
  const midB = b.slice(head, b.length - tail);
  const middle = myers(midA, midB) ?? [...midA.map((l) => ['-', l]), ...midB.map((l) => ['+', l])];
  return [...a.slice(0, head).map((l) => [' ', l]), ...middle, ...a.slice(a.length - tail).map((l) => [' ', l])];
}

/** Myers' shortest edit script between two line arrays, or undefined past MAX_DIFF_EDITS edits. */
function myers(a, b) {
  const n = a.length;
  const m = b.length;
  const offset = n + m + 1;
  // furthest[k + offset]: the furthest x reached on diagonal k (y = x - k).
  const furthest = new Int32Array(2 * offset + 1);
  // Per round d, the diagonals -(d+1)..(d+1) as they were before it: what the walk back reads.
  const rounds = [];
  for (let d = 0; d <= Math.min(n + m, MAX_DIFF_EDITS); d++) {
    rounds.push(furthest.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && furthest[offset + k - 1] < furthest[offset + k + 1]) ? furthest[offset + k + 1] : furthest[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) x++, y++;
      furthest[offset + k] = x;
      if (x >= n && y >= m) return walkBack(a, b, rounds);
    }
  }
  return undefined;
}

function walkBack(a, b, rounds) {
  const out = [];
  let x = a.length;
  let y = b.length;
  for (let d = rounds.length - 1; d >= 0; d--) {
    const before = rounds[d];
    const at = (k) => before[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) out.push([' ', a[--x]]), y--;
    if (d > 0) {
      if (x === prevX) out.push(['+', b[--y]]);
      else out.push(['-', a[--x]]);
    }
  }
  return out.reverse();
}

/** JSON with object keys in one order (name first, then alphabetical): stored versions may list the same keys in different orders. */
function canonicalJson(value) {
  const order = (v) => {
    if (Array.isArray(v)) return v.map(order);
    if (!v || typeof v !== 'object') return v;
    const keys = Object.keys(v).sort((p, q) => (p === 'name' ? -1 : q === 'name' ? 1 : p < q ? -1 : p > q ? 1 : 0));
    return Object.fromEntries(keys.map((key) => [key, order(v[key])]));
  };
  return JSON.stringify(order(value), null, 2);
}

/** The diff as markup: changed lines with a few lines of context, long unchanged runs folded. */
function diffHtml(diff) {
  const near = new Uint8Array(diff.length);
  diff.forEach(([kind], i) => {
    if (kind === ' ') return;
    for (let k = Math.max(0, i - DIFF_CONTEXT); k <= Math.min(diff.length - 1, i + DIFF_CONTEXT); k++) near[k] = 1;
  });
  let html = '';
  let folded = 0;
  diff.forEach(([kind, line], i) => {
    if (!near[i]) return void folded++;
    if (folded) html += `<span class="skip">… ${folded} unchanged line${folded === 1 ? '' : 's'}</span>`;
    folded = 0;
    const cls = kind === '+' ? 'add' : kind === '-' ? 'del' : 'ctx';
    html += `<span class="${cls}">${kind} ${esc(line)}</span>`;
  });
  if (folded) html += `<span class="skip">… ${folded} unchanged line${folded === 1 ? '' : 's'}</span>`;
  return html;
}

let diffShown = '';

async function showDiff() {
  const from = byId('diff-from').value;
  const to = byId('diff-to').value;
  if (!from || !to || `${from}:${to}` === diffShown) return;
  const [a, b] = await Promise.all([configText(from), configText(to)]);
  const diff = lineDiff(a, b);
  const added = diff.filter((d) => d[0] === '+').length;
  const removed = diff.filter((d) => d[0] === '-').length;
  const out = byId('diff');
  out.innerHTML = added || removed ? diffHtml(diff) : '<span class="skip">identical</span>';
  out.dataset.from = from;
  out.dataset.to = to;
  byId('diff-summary').textContent = `${added} line(s) added, ${removed} removed`;
  diffShown = `${from}:${to}`;
}

let versionsRendered = '';

async function pollVersions() {
  const versions = await getJson('../config/versions');
  const key = versions.map((v) => `${v.version}${v.current ? '*' : ''}`).join(',');
  if (key === versionsRendered) return;
  const newest = versions.map((v) => v.version).sort((x, y) => y - x);
  const fromSelect = byId('diff-from');
  const toSelect = byId('diff-to');
  // A new version moves a diff that showed the newest pair on to the new newest pair; a pair the
  // reader picked stays.
  const followNewest = !versionsRendered || (toSelect.value === toSelect.dataset.newest && fromSelect.value === fromSelect.dataset.newest);
  versionsRendered = key;
  setRows(
    byId('version-rows'),
    [...versions]
      .reverse()
      .map(
        (v) =>
          `<tr data-version="${esc(v.version)}"><td class="num">${esc(v.version)}</td><td>${esc(new Date(v.createdAt).toLocaleString())}</td><td>${esc(v.source)}</td><td><code>${esc(v.hash)}</code></td><td>${v.current ? '<b>current</b>' : ''}</td></tr>`,
      )
      .join(''),
  );
  const options = (selected) => newest.map((v) => `<option value="${v}"${String(v) === String(selected) ? ' selected' : ''}>${v}</option>`).join('');
  const to = followNewest ? newest[0] : toSelect.value;
  const from = followNewest ? (newest[1] ?? newest[0]) : fromSelect.value;
  fromSelect.innerHTML = options(from);
  toSelect.innerHTML = options(to);
  toSelect.dataset.newest = String(newest[0]);
  fromSelect.dataset.newest = String(newest[1] ?? newest[0]);
  await showDiff();
}

// ---- polling ------------------------------------------------------------------------------------

byId('cluster-select').addEventListener('change', (ev) => {
  selectedCluster = ev.target.value;
  history.replaceState(null, '', `?cluster=${encodeURIComponent(selectedCluster)}${location.hash}`);
  for (const row of byId('cluster-rows').rows) row.classList.toggle('selected', row.dataset.cluster === selectedCluster);
  renderEndpoints(lastClusterStatuses.get(selectedCluster));
  void pollClusters();
});
byId('only-unhealthy').addEventListener('change', () => renderEndpoints(lastClusterStatuses.get(selectedCluster)));
byId('address-filter').addEventListener('input', () => renderEndpoints(lastClusterStatuses.get(selectedCluster)));
byId('diff-from').addEventListener('change', () => void showDiff().catch((e) => showProblem(e.message)));
byId('diff-to').addEventListener('change', () => void showDiff().catch((e) => showProblem(e.message)));

startPolling(POLL_MS, [pollReady, pollRates, pollRoutes, pollClusters, pollVersions]);

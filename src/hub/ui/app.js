// The hub UI: read-only views over the hub API's JSON (same origin, same authentication as the
// API). Helpers (byId, esc, getJson, setRows, startPolling) come from common.js, shared with the
// gateway UI. Each table is one innerHTML assignment, made only when its markup changed, and the
// markup holds nothing that changes every poll (no "seconds ago"), so 100 idle gateways cost one
// string comparison per poll.
'use strict';

const POLL_MS = 3000;
/** Gateways renew their SVID at half its lifetime: one with less left than that is late. */
const RENEWAL_POINT = 0.5;

/** The latest answers, so the filters redraw without waiting for a poll. */
let hubVersion;
let gateways = [];
let ca;

/** An ISO time as `YYYY-MM-DD HH:MM:SSZ` (UTC, as the API gives it). */
const when = (iso) => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z` : '');

function duration(ms) {
  const minutes = Math.round(ms / 60000);
  if (minutes < 120) return `${minutes}m`;
  const hours = Math.round(minutes / 60);
  return hours < 72 ? `${hours}h` : `${Math.round(hours / 24)}d`;
}

/** ok / late (past its renewal point) / expired, from the CA's SVID lifetime. */
function svidState(expiresAt, now = Date.now()) {
  const left = Date.parse(expiresAt) - now;
  if (left <= 0) return 'expired';
  if (ca && left < ca.svidTtlMs * RENEWAL_POINT) return 'late';
  return 'ok';
}

const svidClass = { ok: 'healthy', late: 'degraded', expired: 'unhealthy' };

function svidCell(svid) {
  if (!svid) return '<td class="muted">–</td>';
  const state = svidState(svid.expiresAt);
  return `<td class="${svidClass[state]}" data-svid="${state}">${esc(when(svid.expiresAt))}${state === 'ok' ? '' : ` (${state})`}</td>`;
}

// ---- fleet --------------------------------------------------------------------------------------

/** In sync / behind / rejected: a rejection newer than the last ack is what an operator must see. */
function configState(g) {
  if (g.inSync) return { state: 'in-sync', text: 'in sync', cls: 'healthy' };
  const rejected = g.lastRejected && (!g.lastAck || g.lastRejected.at > g.lastAck.at);
  if (rejected) return { state: 'rejected', text: `rejected v${g.lastRejected.version}`, cls: 'unhealthy' };
  return { state: 'behind', text: g.lastSent ? `behind (sent v${g.lastSent.version})` : 'nothing sent', cls: 'degraded' };
}

function gatewayRow(g) {
  const config = configState(g);
  const l = g.locality ?? {};
  const connected = g.connected
    ? `<td class="healthy">yes${g.replicas > 1 ? ` (${g.replicas} replicas)` : ''}</td>`
    : `<td class="unhealthy">no <span class="muted">last seen ${esc(when(g.lastSeen))}</span></td>`;
  // Per replica only where there are several: one replica's ack is the gateway's. Replica ids are
  // random per process; their first 8 characters tell them apart.
  const replicaAcks =
    (g.replicaAcks ?? []).length > 1
      ? g.replicaAcks
          .map((r) => `${esc(r.replica.slice(0, 8))}: ${r.lastAck ? `v${esc(r.lastAck.version)}${r.lastAck.ok ? '' : ' rejected'}` : 'none'}`)
          .join(', ')
      : '';
  return `<tr data-gateway="${esc(g.id)}" data-region="${esc(l.region)}" data-zone="${esc(l.zone)}" data-in-sync="${g.inSync}" data-connected="${g.connected}">
<td>${esc(g.id)}</td><td>${esc(g.labels?.cluster ?? '')}</td>${connected}
<td class="${config.cls}" data-config="${config.state}">${esc(config.text)}</td>
<td>${g.lastAck ? `v${esc(g.lastAck.version)} <span class="muted">${esc(g.lastAck.hash)}</span>` : '–'}${replicaAcks ? ` <span class="muted">(${replicaAcks})</span>` : ''}</td>
<td class="num">${esc(g.instances)}</td><td>${esc(g.eastWestAddress ?? '')}</td><td>${esc(g.identity)}</td>${svidCell(g.svid)}</tr>`;
}

const localityKey = (g) => `${g.locality?.region ?? ''}\u0000${g.locality?.zone ?? ''}`;

function renderFleet() {
  const onlyProblems = byId('only-problems').checked;
  const idFilter = byId('gateway-filter').value.trim();
  const shown = gateways
    .filter((g) => !onlyProblems || !g.inSync || !g.connected)
    .filter((g) => !idFilter || g.id.includes(idFilter))
    .sort((a, b) => localityKey(a).localeCompare(localityKey(b)) || a.id.localeCompare(b.id));
  const groups = new Map();
  for (const g of shown) {
    const key = localityKey(g);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(g);
  }
  let html = '';
  for (const members of groups.values()) {
    const { region, zone } = members[0].locality ?? {};
    const inSync = members.filter((g) => g.inSync).length;
    const connected = members.filter((g) => g.connected).length;
    html += `<tr class="group" data-region="${esc(region)}" data-zone="${esc(zone)}"><th colspan="9">region ${esc(region || '–')} / zone ${esc(zone || '–')} <span class="muted">${members.length} gateway(s), ${connected} connected, ${inSync} in sync</span></th></tr>`;
    html += members.map(gatewayRow).join('');
  }
  setRows(byId('fleet-rows'), html);
  const inSync = gateways.filter((g) => g.inSync).length;
  const connected = gateways.filter((g) => g.connected).length;
  byId('fleet-count').textContent = `(${gateways.length}, ${connected} connected, ${inSync} in sync${shown.length < gateways.length ? `; ${shown.length} shown` : ''})`;
}

async function pollFleet() {
  const fleet = await getJson('../fleet');
  hubVersion = fleet.version;
  gateways = fleet.gateways;
  renderFleet();
  renderCertificates();
  byId('hub-state').textContent = `config version ${hubVersion} · ${gateways.length} gateway(s)`;
}

// ---- virtual destinations -----------------------------------------------------------------------

/** At most this many source gateways are named in a row; the rest are counted. */
const MAX_NAMED_SOURCES = 8;

function sources(ids) {
  const named = ids.slice(0, MAX_NAMED_SOURCES).map(esc).join(', ');
  return ids.length > MAX_NAMED_SOURCES ? `${named} <span class="muted">and ${ids.length - MAX_NAMED_SOURCES} more</span>` : named;
}

function tierMember(m, from) {
  const cls = m.healthy === 0 ? 'unhealthy' : m.healthy < m.instances ? 'degraded' : 'healthy';
  const self = from.length === 1 && from[0] === m.id ? ' <span class="muted">(local)</span>' : '';
  const where = [m.locality?.region, m.locality?.zone].filter(Boolean).join('/');
  return `<span class="${cls}" data-member="${esc(m.id)}">${esc(m.id)}${m.cluster && m.cluster !== m.id ? ` [${esc(m.cluster)}]` : ''}${self} ${m.healthy}/${m.instances}</span>${where ? ` <span class="muted">${esc(where)}</span>` : ''}`;
}

function pathRow(vd, path, first) {
  const failover = vd.failover.order ? `order ${vd.failover.order.map(esc).join(' → ')}` : 'by locality';
  const active = path.tiers[path.activeTier] ?? [];
  const now = active.length ? active.map((m) => esc(m.id)).join(', ') : '<span class="unhealthy">nowhere (503)</span>';
  const tiers = path.tiers
    .map((tier, i) => `<li class="${i === path.activeTier ? 'active' : ''}">${i === path.activeTier ? '▶ ' : ''}${tier.map((m) => tierMember(m, path.from)).join(', ')}</li>`)
    .join('');
  const head = first
    ? `<td rowspan="${vd.paths.length}">${esc(vd.name)}</td><td rowspan="${vd.paths.length}">${esc(vd.host)}:${esc(vd.port)}</td><td rowspan="${vd.paths.length}">${failover}</td>`
    : '';
  return `<tr data-vd="${esc(vd.name)}" data-from="${esc(path.from.join(','))}" data-active="${esc(active.map((m) => m.id).join(','))}">${head}
<td>${sources(path.from)}</td><td>${now}</td><td><ol class="tiers">${tiers || '<li class="unhealthy">no instances</li>'}</ol></td></tr>`;
}

async function pollVirtualDestinations() {
  const { virtualDestinations } = await getJson('../fleet/virtual-destinations');
  let html = '';
  for (const vd of virtualDestinations) {
    if (vd.paths.length === 0)
      html += `<tr data-vd="${esc(vd.name)}" data-active=""><td>${esc(vd.name)}</td><td>${esc(vd.host)}:${esc(vd.port)}</td><td></td><td class="muted" colspan="3">no gateway it targets has reported</td></tr>`;
    else html += vd.paths.map((path, i) => pathRow(vd, path, i === 0)).join('');
  }
  setRows(byId('vd-rows'), html);
  byId('vd-count').textContent = `(${virtualDestinations.length})`;
}

// ---- certificates -------------------------------------------------------------------------------

async function pollCa() {
  const res = await fetch('../ca', { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw new Error(`../ca: ${res.status}`);
  const body = await res.json();
  // issuing: false: the hub issues no certificates (hub.ca unset), a state to show, not a failure.
  ca = body.issuing ? body : null;
  renderCertificates();
}

function renderCertificates() {
  const summary = byId('ca-summary');
  if (ca === undefined) return;
  if (ca === null) {
    summary.textContent = 'The hub issues no certificates (hub.ca is not set).';
    setRows(byId('svid-rows'), '');
    return;
  }
  const caState = svidState(ca.expiresAt) === 'expired' ? ' (expired)' : '';
  summary.textContent = `CA of trust domain ${ca.trustDomain}, valid until ${when(ca.expiresAt)}${caState}; SVIDs live ${duration(ca.svidTtlMs)} and are renewed at half-life. Issued SVIDs since this hub started, soonest expiry first:`;
  const issued = gateways.filter((g) => g.svid).sort((a, b) => a.svid.expiresAt.localeCompare(b.svid.expiresAt));
  setRows(
    byId('svid-rows'),
    issued
      .map((g) => `<tr data-gateway="${esc(g.id)}"><td>${esc(g.id)}</td><td>${esc(g.svid.spiffeId)}</td><td>${esc(when(g.svid.issuedAt))}</td>${svidCell(g.svid)}</tr>`)
      .join(''),
  );
}

byId('only-problems').addEventListener('change', renderFleet);
byId('gateway-filter').addEventListener('input', renderFleet);

startPolling(POLL_MS, [pollFleet, pollVirtualDestinations, pollCa]);

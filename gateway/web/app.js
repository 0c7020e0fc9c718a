// Maildrop web client: one page, three views (home, inbox, message), routed client-side.
//
// Security rules this file keeps (the page runs under a strict CSP and mail content is hostile):
// - every piece of server data reaches the DOM through textContent or attribute setters, never
//   innerHTML;
// - a message's HTML body only ever goes into a sandboxed <iframe>, loaded from its own route;
// - no inline styles: the look is switched with classes, data-attributes and `hidden`.
'use strict';

const $ = (sel) => document.querySelector(sel);
const NAME_RE = /^[a-z0-9._-]{1,64}$/;

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Calls the JSON API; throws an Error carrying the server's `error.message` on failure. */
async function api(path, opts = {}) {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: 'application/json' }, ...opts });
  } catch {
    throw new Error('Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON (a proxy's error page, say): fall through to the generic message.
  }
  if (!res.ok) {
    const err = new Error(body?.error?.message || `Request failed (${res.status} ${res.statusText})`);
    err.code = body?.error?.code;
    err.status = res.status;
    throw err;
  }
  return body;
}

/** Builds an element; `text` goes through textContent so it can never become markup. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

const enc = encodeURIComponent;
const boxPath = (name) => `/api/mailboxes/${enc(name)}`;
const msgPath = (name, id) => `${boxPath(name)}/messages/${enc(id)}`;

/** What people type: `Bob`, `bob+tag`, `bob@maildrop.example` all mean mailbox `bob` (as on SMTP). */
function normalizeName(input) {
  return input.trim().split('@')[0].split('+')[0].toLowerCase();
}

function fmtSize(bytes) {
  if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MB`;
  return `${Math.max(0.1, bytes / 1024).toFixed(1)} KB`;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  return d === 1 ? 'yesterday' : `${d} days ago`;
}

function fmtTime(ms) {
  return new Date(ms).toLocaleString();
}

/** `Alice <a@x>` → `Alice`, `<a@x>` → `a@x`; a bare address stays as it is. */
function senderName(from) {
  if (!from) return '(unknown sender)';
  const m = /^\s*(?:"((?:[^"\\]|\\.)*)"|([^<]*?))\s*<([^>]*)>\s*$/.exec(from);
  if (!m) return from;
  return (m[1] ?? m[2]).replace(/\\(.)/g, '$1').trim() || m[3] || from;
}

// ---------------------------------------------------------------------------------------------
// Alerts

function showAlert(text, kind = 'error') {
  $('#alert-text').textContent = text;
  $('#alert').dataset.kind = kind;
  $('#alert').hidden = false;
}

function clearAlert() {
  $('#alert').hidden = true;
  $('#alert-text').textContent = '';
}

// ---------------------------------------------------------------------------------------------
// Config (the mail domain)

let domain = location.hostname;

async function loadConfig() {
  // Every view shows the domain, so the first render waits for it, but not for long.
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 3000);
  try {
    const cfg = await api('/api/config', { signal: ctl.signal });
    if (cfg?.domains?.length) domain = cfg.domains[0];
  } catch {
    // Keep the host name as a best guess; the inbox still works without the config.
  } finally {
    clearTimeout(timer);
  }
}

const address = (name) => `${name}@${domain}`;

// ---------------------------------------------------------------------------------------------
// Read marks: which message ids were opened, per mailbox, in localStorage (private modes may
// refuse storage; then marks just last for the page's life).

const READ_MAX = 500;
const readKey = (name) => `maildrop.read.${name}`;

function loadRead(name) {
  try {
    return new Set(JSON.parse(localStorage.getItem(readKey(name))) || []);
  } catch {
    return new Set();
  }
}

function markRead(box, id) {
  if (box.read.has(id)) return;
  box.read.add(id);
  try {
    localStorage.setItem(readKey(box.name), JSON.stringify([...box.read].slice(-READ_MAX)));
  } catch {
    // Storage full or disabled: the in-memory set still works.
  }
}

// ---------------------------------------------------------------------------------------------
// Mailbox state: the message list of the mailbox being viewed, kept up to date by the socket
// while the inbox or one of its messages is open.

let box = null; // { name, alias, messages, loaded, read, cursorId, fetching, refetch, replay }

function openBox(name) {
  if (box?.name === name) return box;
  live.close();
  box = { name, alias: null, messages: [], loaded: false, read: loadRead(name), cursorId: null,
          fetching: false, refetch: false, replay: null };
  live.connect(name);
  return box;
}

function closeBox() {
  live.close();
  box = null;
}

function sortMessages(list) {
  // Newest first; ids are ULIDs, so they break ties in time order too.
  list.sort((a, b) => b.received_ms - a.received_ms || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

function applyEvent(b, ev) {
  if (ev.type === 'stored' && ev.summary) {
    if (!b.messages.some((m) => m.id === ev.id)) {
      b.messages.push(ev.summary);
      sortMessages(b.messages);
    }
  } else if (ev.type === 'deleted') {
    b.messages = b.messages.filter((m) => m.id !== ev.id);
  } else if (ev.type === 'cleared' || ev.type === 'expired') {
    b.messages = [];
  }
}

/**
 * Fetches the list as a fresh snapshot. Socket events that arrive while the request is in
 * flight are replayed on top of the snapshot, so a message stored (or deleted) in between is
 * neither lost nor resurrected. Calls are serialized: a call during a fetch schedules one more.
 */
async function refreshList(b = box) {
  if (!b) return;
  if (b.fetching) {
    b.refetch = true;
    return;
  }
  b.fetching = true;
  try {
    do {
      b.refetch = false;
      b.replay = [];
      const data = await api(boxPath(b.name));
      const messages = Array.isArray(data?.messages) ? data.messages : [];
      sortMessages(messages);
      b.messages = messages;
      if (typeof data?.alias === 'string') b.alias = data.alias;
      b.replay.forEach((ev) => applyEvent(b, ev));
      b.loaded = true;
      if (b === box) boxChanged();
    } while (b.refetch);
  } catch (e) {
    if (b === box) showAlert(e.message);
  } finally {
    b.fetching = false;
    b.replay = null;
  }
}

/** Re-renders whatever shows the mailbox after its list changed. */
function boxChanged() {
  if (view === 'inbox') renderList();
}

// ---------------------------------------------------------------------------------------------
// Live updates over a WebSocket, with reconnect and exponential backoff (1 s → 30 s).

const live = {
  name: null,
  ws: null,
  attempt: 0,
  timer: 0,
  openedAt: 0,
  // Stream sequence of the last event seen: a reconnect asks for everything after it.
  lastSeq: 0,

  connect(name) {
    this.name = name;
    this.attempt = 0;
    this.lastSeq = 0;
    setBadge('connecting');
    this.open();
  },

  open() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const resume = this.lastSeq > 0 ? `?after=${this.lastSeq}` : '';
    const ws = new WebSocket(`${proto}//${location.host}${boxPath(this.name)}/ws${resume}`);
    this.ws = ws;
    ws.onopen = () => {
      this.openedAt = Date.now();
      setBadge('live');
      // A resumed socket replays exactly what was missed. A first connection only carries what
      // happens from now on: fetch the list to start from a snapshot.
      if (!resume) refreshList();
    };
    ws.onmessage = (e) => onLiveEvent(e.data);
    ws.onclose = () => {
      this.ws = null;
      // A connection that stayed up a while was healthy: start the backoff from 1 s again.
      if (this.openedAt && Date.now() - this.openedAt > 10000) this.attempt = 0;
      this.openedAt = 0;
      setBadge('reconnecting');
      const delay = Math.min(30000, 1000 * 2 ** this.attempt++);
      // Jitter, so a restarted gateway is not hit by every client in the same millisecond.
      this.timer = setTimeout(() => this.open(), delay * (0.8 + Math.random() * 0.4));
    };
  },

  /** Reconnect at once (the network came back) instead of waiting out the backoff. */
  kick() {
    if (this.name && !this.ws) {
      clearTimeout(this.timer);
      this.open();
    }
  },

  close() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.ws = null;
    this.name = null;
  },
};

function setBadge(state) {
  const badge = $('#conn');
  badge.dataset.state = state;
  badge.textContent = state;
}

function onLiveEvent(data) {
  let ev;
  try {
    ev = JSON.parse(data);
  } catch {
    return;
  }
  // Only version 1 events for this mailbox are understood; anything else is ignored.
  if (!box || ev?.v !== 1 || ev.mailbox !== box.name) return;
  if (Number.isInteger(ev.seq) && ev.seq > live.lastSeq) live.lastSeq = ev.seq;
  // Too far behind (or too long away) to replay: start again from a snapshot.
  if (ev.type === 'resync') {
    refreshList();
    return;
  }
  if (box.replay) box.replay.push(ev);
  applyEvent(box, ev);
  boxChanged();
  // The open message went away: go back to the list rather than show a ghost.
  if (view === 'message' && (ev.type === 'cleared' || ev.type === 'expired' || (ev.type === 'deleted' && ev.id === openId))) {
    navigate(`/inbox/${enc(box.name)}`, true);
    showAlert('This message was deleted.', 'info');
  }
}

// ---------------------------------------------------------------------------------------------
// Routing: /  ·  /inbox/{name}  ·  /inbox/{name}/{id}

let view = null; // 'home' | 'inbox' | 'message'
let openId = null;
let routeGen = 0; // bumps on every route, so late responses for a page we left are dropped
// The home page's live counters: an EventSource on /api/stats/events while home is shown.
let statsFeed = null;
let chartTimer = 0;

function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route(true);
}

function route(moveFocus = false) {
  const gen = ++routeGen;
  if (statsFeed) statsFeed.close();
  statsFeed = null;
  clearAlert();
  const parts = location.pathname.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });

  if (parts[0] !== 'inbox' || parts.length < 2 || parts.length > 3) {
    if (location.pathname !== '/') history.replaceState(null, '', '/');
    renderHome(gen);
  } else {
    const name = normalizeName(parts[1]);
    if (!NAME_RE.test(name)) {
      history.replaceState(null, '', '/');
      renderHome(gen);
      showAlert('A mailbox name may contain only letters, digits, ".", "_" and "-" (at most 64).');
    } else {
      // Canonical URL: mailbox names are case-insensitive and stored lower-case.
      const canonical = `/inbox/${enc(name)}${parts[2] ? `/${enc(parts[2])}` : ''}`;
      if (canonical !== location.pathname) history.replaceState(null, '', canonical);
      if (parts[2]) renderMessage(name, parts[2], gen);
      else renderInbox(name);
    }
  }
  // After an in-page navigation, move focus to the new heading, as a page load would.
  if (moveFocus) document.querySelector(`#${view} h1`)?.focus();
}

function showView(name) {
  view = name;
  for (const id of ['home', 'inbox', 'message']) $(`#${id}`).hidden = id !== name;
}

// ---------------------------------------------------------------------------------------------
// Home

const ADJECTIVES = ['quiet', 'brave', 'lucky', 'sunny', 'misty', 'rapid', 'gentle', 'clever',
  'witty', 'calm', 'bold', 'shy', 'merry', 'fuzzy', 'silver', 'golden', 'crimson', 'amber',
  'cosmic', 'frosty', 'humble', 'jolly', 'nimble', 'proud', 'rustic', 'sleepy', 'tidy', 'vivid',
  'wild', 'zesty'];
const NOUNS = ['otter', 'falcon', 'maple', 'comet', 'badger', 'harbor', 'lynx', 'meadow',
  'pebble', 'raven', 'willow', 'walrus', 'panda', 'heron', 'cactus', 'ember', 'fjord', 'gecko',
  'island', 'koala', 'lantern', 'moose', 'nebula', 'orchid', 'puffin', 'quokka', 'river',
  'tiger', 'vole', 'yak'];

function pick(list) {
  // crypto, not Math.random: a guessable "random" inbox name would defeat its purpose.
  return list[crypto.getRandomValues(new Uint32Array(1))[0] % list.length];
}

function randomName() {
  const n = 10 + (crypto.getRandomValues(new Uint32Array(1))[0] % 990);
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${n}`;
}

function renderHome(gen) {
  closeBox();
  openId = null;
  showView('home');
  document.title = 'Maildrop — disposable inboxes';
  updateHomeAddr();
  // The series once a minute (the live feed carries only the counters, pushed on change;
  // EventSource reconnects by itself). A redraw scheduled on an earlier visit to this page
  // belongs to that visit: it must not hold this one's back, and the first counters this visit
  // hears always get a fresh chart.
  chart.pending = false;
  chart.received = null;
  loadChart(gen);
  clearInterval(chartTimer);
  chartTimer = setInterval(() => (gen === routeGen ? loadChart(gen) : clearInterval(chartTimer)), 60000);
  statsFeed = new EventSource('/api/stats/events');
  statsFeed.addEventListener('stats', (e) => {
    if (gen !== routeGen) return;
    try {
      const s = JSON.parse(e.data);
      showStats(s);
      // New mail since the chart was drawn: redraw, at most every 5 s.
      if (s.received !== chart.received && !chart.pending) {
        chart.pending = true;
        setTimeout(() => {
          if (gen !== routeGen) return;
          chart.pending = false;
          loadChart(gen);
        }, Math.max(0, chart.at + 5000 - Date.now()));
      }
    } catch {
      // Counters are decoration: a bad event is not worth an alert.
    }
  });
}

function updateHomeAddr() {
  const name = normalizeName($('#home-name').value);
  $('#home-addr').textContent = address(name || 'name');
}

function showStats(s) {
  const saved = Number(s.stored || 0);
  const spam = Number(s.rejected || 0) + Number(s.rejected_ingest || 0);
  $('#stats').textContent = `${saved.toLocaleString()} ${saved === 1 ? 'message' : 'messages'} saved · ${spam.toLocaleString()} blocked as spam`;
}

// The traffic chart: inline SVG built node by node (no markup strings, no library), from the
// per-hour series of /api/stats. Hidden when there is none (an older gateway): it is decoration.
const SVG_NS = 'http://www.w3.org/2000/svg';

/** The last 24 hourly buckets as [{ t, received, blocked }], oldest first; or null. */
function dayOf(s) {
  const hours = s?.series?.hour;
  if (!Array.isArray(hours) || !hours.length) return null;
  return hours.slice(-24).map((p) => ({
    t: Number(p.t),
    received: Number(p.received || 0) + Number(p.rejected_ingest || 0),
    blocked: Number(p.rejected || 0) + Number(p.rejected_ingest || 0),
  }));
}

// When the chart was last loaded, and the `received` counter it showed: the live feed's
// counters say when it is out of date.
const chart = { at: 0, received: null, pending: false };

async function loadChart(gen) {
  chart.at = Date.now();
  try {
    const s = await api('/api/stats?minutes=0&hours=24&top=0');
    if (gen !== routeGen) return;
    chart.received = s.received;
    drawChart(dayOf(s));
  } catch {
    // Decoration: the counters still come from the live feed.
  }
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function drawChart(buckets) {
  $('#chart').hidden = !buckets;
  if (!buckets) return;
  const W = 480, H = 100, gap = 2, bw = W / buckets.length;
  const max = Math.max(1, ...buckets.map((b) => b.received));
  const bars = [];
  for (const [i, b] of buckets.entries()) {
    const h = (b.received / max) * (H - 4);
    const r = (Math.min(b.blocked, b.received) / max) * (H - 4);
    const x = i * bw + gap / 2;
    const title = svg('title', {});
    title.textContent = `${new Date(b.t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${b.received} received, ${b.blocked} blocked`;
    const g = svg('g', {});
    g.append(title, svg('rect', { class: 'bar', x, y: H - h, width: bw - gap, height: Math.max(h, 0.5) }),
      svg('rect', { class: 'bar-spam', x, y: H - r, width: bw - gap, height: r }));
    bars.push(g);
  }
  $('#chart-svg').replaceChildren(svg('line', { class: 'axis', x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }), ...bars);
  const total = buckets.reduce((a, b) => a + b.received, 0);
  const spam = buckets.reduce((a, b) => a + b.blocked, 0);
  $('#chart-sum').textContent = `${total.toLocaleString()} received, ${spam.toLocaleString()} of them blocked as spam; busiest hour: ${max.toLocaleString()}.`;
}

// ---------------------------------------------------------------------------------------------
// Inbox

function renderInbox(name) {
  const b = openBox(name);
  openId = null;
  showView('inbox');
  $('#inbox-addr').textContent = address(name);
  $('#empty-addr').textContent = address(name);
  if (listName !== name) {
    // Rows of another mailbox must not linger; rows of this one are kept (coming back from a
    // message), so the live region does not re-announce the whole list.
    $('#list').replaceChildren();
    rowCache.clear();
    listName = name;
  }
  renderList();
  refreshList(b);
}

function renderAlias() {
  $('#alias-row').hidden = !box.alias;
  $('#alias').textContent = box.alias ? address(box.alias) : '';
}

const rowCache = new Map(); // message id → <li>, so re-renders keep DOM nodes (and focus) stable
let listName = null; // the mailbox whose rows rowCache holds

function makeRow(msg) {
  const href = `/inbox/${enc(box.name)}/${enc(msg.id)}`;
  const subject = msg.subject || '(no subject)';
  const time = el('time', { datetime: new Date(msg.received_ms).toISOString(),
    title: fmtTime(msg.received_ms), 'data-ms': String(msg.received_ms) });
  time.textContent = ago(msg.received_ms);
  return el('li', { class: 'msg', 'data-id': msg.id },
    el('a', { class: 'open', href },
      el('span', { class: 'sr unread-label', text: 'Unread: ' }),
      el('span', { class: 'from', text: senderName(msg.from), title: msg.from || '' }),
      el('span', { class: 'subj', text: subject })),
    el('span', { class: 'info' }, time, el('span', { class: 'size', text: fmtSize(msg.size || 0) })),
    el('button', { type: 'button', class: 'del', 'aria-label': `Delete “${subject}”`, text: 'Delete' }));
}

/** Brings the list DOM in line with box.messages, touching only rows that changed. */
function renderList() {
  const list = $('#list');
  const ids = new Set(box.messages.map((m) => m.id));
  for (const [id, li] of rowCache) {
    if (!ids.has(id)) {
      li.remove();
      rowCache.delete(id);
    }
  }
  let next = list.firstElementChild;
  for (const msg of box.messages) {
    let li = rowCache.get(msg.id);
    if (!li) rowCache.set(msg.id, (li = makeRow(msg)));
    const unread = !box.read.has(msg.id);
    li.classList.toggle('unread', unread);
    li.querySelector('.unread-label').hidden = !unread;
    li.classList.toggle('cur', msg.id === box.cursorId);
    if (li === next) next = next.nextElementSibling;
    else list.insertBefore(li, next);
  }
  renderAlias();
  $('#inbox-empty').hidden = !box.loaded || box.messages.length > 0;
  $('#empty').disabled = box.messages.length === 0;
  const unreadCount = box.messages.filter((m) => !box.read.has(m.id)).length;
  document.title = `${unreadCount ? `(${unreadCount}) ` : ''}${address(box.name)} — Maildrop`;
}

function refreshTimes() {
  for (const t of document.querySelectorAll('time[data-ms]')) t.textContent = ago(Number(t.dataset.ms));
}

function openMessage(id) {
  navigate(`/inbox/${enc(box.name)}/${enc(id)}`);
}

async function deleteMessage(name, id) {
  try {
    await api(msgPath(name, id), { method: 'DELETE' });
    // Don't wait for the socket's echo: it may be down. applyEvent is idempotent.
    if (box?.name === name) {
      applyEvent(box, { type: 'deleted', id });
      boxChanged();
    }
    return true;
  } catch (e) {
    showAlert(e.message);
    return false;
  }
}

async function emptyInbox() {
  const name = box.name;
  if (!confirm(`Delete every message in ${address(name)}? This cannot be undone.`)) return;
  try {
    await api(boxPath(name), { method: 'DELETE' });
    if (box?.name === name) {
      applyEvent(box, { type: 'cleared' });
      boxChanged();
    }
  } catch (e) {
    showAlert(e.message);
  }
}

async function copyText(btn, text) {
  try {
    await navigator.clipboard.writeText(text);
    btn.textContent = 'Copied';
    setTimeout(() => (btn.textContent = 'Copy'), 1500);
  } catch {
    // The clipboard API needs a secure context (https or localhost) and permission.
    showAlert('Could not copy automatically: select the address and copy it by hand.');
  }
}

/** j/k: moves the highlighted row (and keyboard focus with it). */
function moveCursor(step) {
  const msgs = box.messages;
  if (!msgs.length) return;
  const i = msgs.findIndex((m) => m.id === box.cursorId);
  const j = i < 0 ? (step > 0 ? 0 : msgs.length - 1) : Math.min(msgs.length - 1, Math.max(0, i + step));
  box.cursorId = msgs[j].id;
  renderList();
  rowCache.get(box.cursorId)?.querySelector('.open').focus();
}

/** After deleting the highlighted row, highlight its neighbour so `d d d` keeps working. */
async function deleteCursor() {
  const msgs = box.messages;
  const i = msgs.findIndex((m) => m.id === box.cursorId);
  if (i < 0) return;
  const neighbour = msgs[i + 1] || msgs[i - 1];
  if (await deleteMessage(box.name, msgs[i].id) && box) {
    box.cursorId = neighbour?.id ?? null;
    renderList();
    if (box.cursorId) rowCache.get(box.cursorId)?.querySelector('.open').focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Message

// The HTML body is never put into this page: the frame loads it from its own route
// (`…/messages/{id}/html`), which the gateway serves sanitised and under its own policy (no script,
// nothing remote). The frame's sandbox gives it an opaque origin and no scripts; links may open a
// new tab, which escapes the sandbox so the linked site works normally.
function renderMessage(name, id, gen) {
  const b = openBox(name); // keeps the socket, so a live `deleted` can close this view
  openId = id;
  showView('message');
  $('#back').href = `/inbox/${enc(name)}`;
  $('#m-raw').href = `${msgPath(name, id)}/raw`;
  $('#m-raw').setAttribute('download', `${id}.eml`);
  $('#m-subject').textContent = 'Loading…';
  for (const f of ['#m-from', '#m-to', '#m-date', '#m-score']) $(f).textContent = '';
  $('#m-score').hidden = $('#m-score-dt').hidden = true;
  $('#m-html').removeAttribute('src');
  $('#remote').hidden = true;
  $('#m-atts').replaceChildren();
  $('#m-atts').hidden = true;
  $('#m-text').textContent = '';
  $('#m-raw-text').textContent = '';
  rawFor = null;
  $('#panel-meta').replaceChildren();
  for (const p of document.querySelectorAll('.tabs, .panel, #message .actions')) p.hidden = true;
  document.title = 'Message — Maildrop';
  loadMessage(b, id, gen);
}

async function loadMessage(b, id, gen) {
  let msg;
  try {
    msg = await api(msgPath(b.name, id));
  } catch (e) {
    if (gen !== routeGen) return;
    $('#m-subject').textContent = 'Message unavailable';
    showAlert(e.message);
    return;
  }
  if (gen !== routeGen) return;
  markRead(b, id);
  fillMessage(msg);
}

function fillMessage(msg) {
  const h = msg.headers || {};
  const subject = h.subject || '(no subject)';
  document.title = `${subject} — Maildrop`;
  $('#m-subject').textContent = subject;
  $('#m-from').textContent = h.from || msg.envelope?.mail_from || '(unknown sender)';
  $('#m-to').textContent = h.to || (msg.envelope?.rcpt_to || []).join(', ');
  $('#m-date').textContent = messageDate(h.date, msg.envelope?.received_ms);
  if (msg.verdict) {
    const v = msg.verdict;
    const rules = (v.hits || []).map((x) => x.rule).join(', ');
    $('#m-score').textContent = `${v.score} of ${v.threshold} · ${v.score >= v.threshold ? 'spam' : 'not spam'}${rules ? ` · ${rules}` : ''}`;
    $('#m-score').hidden = $('#m-score-dt').hidden = false;
  }
  $('#message .actions').hidden = false;
  const atts = msg.attachments || [];
  $('#m-atts').replaceChildren(...atts.map((a) => attachmentItem(msg, a)));
  $('#m-atts').hidden = !atts.length;

  $('#tab-html').hidden = msg.html == null;
  if (msg.html != null) $('#m-html').src = `${msgPath(msg.mailbox, msg.id)}/html`;
  // Remote images tell the sender the mail was read (and from where): only on request.
  $('#remote').hidden = !msg.remote_content;
  $('#remote-load').hidden = false;
  $('#remote-text').textContent = 'Remote images and styles are blocked, so the sender cannot tell you opened this.';
  $('#m-text').textContent = msg.text ?? '(This message has no plain-text version.)';
  $('#panel-meta').replaceChildren(...metaSections(msg));
  $('.tabs').hidden = false;
  selectTab(msg.html != null ? 'html' : 'text');
}

/** One attachment: a download link, or why it is not there. */
function attachmentItem(msg, a) {
  const name = a.name || `attachment-${a.index}`;
  const info = ` ${a.content_type || ''} · ${fmtSize(a.size || 0)}`;
  if (a.stripped) {
    const why = a.stripped_reason === 'too_large' ? 'too large to keep' : 'not kept on this server';
    return el('li', {}, el('span', { text: name }), el('span', { class: 'hint', text: `${info} · ${why}` }));
  }
  return el('li', {},
    el('a', { href: `${msgPath(msg.mailbox, msg.id)}/attachments/${a.index}`, download: name,
      'aria-label': `Download attachment ${name}`, text: name }),
    el('span', { class: 'hint', text: info }));
}

/** Source tab: the raw message, fetched when first shown, cut at RAW_MAX bytes. */
const RAW_MAX = 512 * 1024;
let rawFor = null;

async function loadRaw() {
  const key = `${box.name}/${openId}`;
  if (rawFor === key) return;
  rawFor = key;
  const pre = $('#m-raw-text');
  pre.textContent = 'Loading…';
  try {
    const res = await fetch(`${msgPath(box.name, openId)}/raw`);
    if (!res.ok) throw new Error(`Could not load the source (${res.status}).`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (rawFor !== key) return;
    let text = new TextDecoder().decode(bytes.subarray(0, RAW_MAX));
    if (bytes.length > RAW_MAX) text += `\n\n[… ${fmtSize(bytes.length - RAW_MAX)} more: download the .eml to see it all]`;
    pre.textContent = text;
  } catch (e) {
    if (rawFor === key) {
      rawFor = null;
      pre.textContent = e.message.startsWith('Could not') ? e.message : 'Could not load the source.';
    }
  }
}

/** The Date header in local time when it parses, as written when it doesn't, else arrival time. */
function messageDate(header, receivedMs) {
  if (header) {
    const d = new Date(header);
    return Number.isNaN(d.getTime()) ? header : d.toLocaleString();
  }
  return receivedMs ? `${fmtTime(receivedMs)} (received)` : '';
}

/** A <dl> from [label, value] pairs; empty values are skipped. */
function defList(pairs) {
  const dl = el('dl', { class: 'kv' });
  for (const [k, v] of pairs) {
    if (v != null && v !== '') dl.append(el('dt', { text: k }), el('dd', { text: String(v) }));
  }
  return dl;
}

function metaSections(msg) {
  const h = msg.headers || {};
  const e = msg.envelope || {};
  const out = [
    el('h2', { text: 'Headers' }),
    defList([['From', h.from], ['To', h.to], ['Cc', h.cc], ['Subject', h.subject],
      ['Date', h.date], ['Message-ID', h.message_id]]),
    el('h2', { text: 'Envelope' }),
    defList([['Client IP', e.client_ip], ['HELO', e.helo], ['MAIL FROM', e.mail_from],
      ['RCPT TO', (e.rcpt_to || []).join(', ')],
      ['Received', e.received_ms ? fmtTime(e.received_ms) : null],
      ['Size', e.size != null ? fmtSize(e.size) : null]]),
  ];
  const v = msg.verdict;
  if (v) {
    out.push(el('h2', { text: 'Spam verdict' }),
      defList([['Score', v.score], ['Threshold', v.threshold], ['Rule set', v.ruleset]]));
    if (v.hits?.length) {
      out.push(el('table', { class: 'hits' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Rule' }), el('th', { text: 'Score' }),
          el('th', { text: 'Reason' }))),
        el('tbody', {}, ...v.hits.map((x) => el('tr', {}, el('td', { text: x.rule }),
          el('td', { text: String(x.score) }), el('td', { text: x.reason || '' }))))));
    }
  }
  return out;
}

const TABS = ['html', 'text', 'meta', 'raw'];

function selectTab(name) {
  for (const t of TABS) {
    const on = t === name;
    const tab = $(`#tab-${t}`);
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1; // roving tabindex: Tab enters the tab list once, arrows move
    $(`#panel-${t}`).hidden = !on;
  }
  if (name === 'raw') loadRaw();
}

/** Left/Right/Home/End between the visible tabs (the WAI-ARIA tabs pattern). */
function onTabKey(e) {
  const visible = TABS.filter((t) => !$(`#tab-${t}`).hidden);
  const i = visible.indexOf(e.target.id.slice(4));
  const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: visible.length - 1 };
  if (!(e.key in moves)) return;
  e.preventDefault();
  const t = visible[(moves[e.key] + visible.length) % visible.length];
  selectTab(t);
  $(`#tab-${t}`).focus();
}

// ---------------------------------------------------------------------------------------------
// Wiring

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  if (e.target.closest('input, textarea, select, [contenteditable]')) {
    if (e.key === 'Escape') e.target.blur();
    return;
  }
  if (e.key === '/') {
    e.preventDefault(); // or the "/" gets typed into the input
    $('#jump-name').focus();
    return;
  }
  if (view === 'message' && box) {
    onMessageKey(e);
    return;
  }
  if (view !== 'inbox' || !box) return;
  if (e.key === 'j' || e.key === 'k') {
    e.preventDefault();
    moveCursor(e.key === 'j' ? 1 : -1);
  } else if (e.key === 'Enter' && box.cursorId && !e.target.closest('a, button')) {
    // On a focused link or button, Enter already does its own thing.
    openMessage(box.cursorId);
  } else if (e.key === 'd' || e.key === 'Delete') {
    e.preventDefault();
    deleteCursor();
  }
}

/** In a message: j/k to the older/newer one, Del to delete it, Escape (or u) back to the list. */
function onMessageKey(e) {
  if (e.target.closest('[role="tab"]') && e.key.startsWith('Arrow')) return;
  if (e.key === 'j' || e.key === 'k') {
    const i = box.messages.findIndex((m) => m.id === openId);
    const next = box.messages[i + (e.key === 'j' ? 1 : -1)];
    if (i >= 0 && next) {
      box.cursorId = next.id;
      navigate(`/inbox/${enc(box.name)}/${enc(next.id)}`, true);
    }
  } else if (e.key === 'Delete' || e.key === 'd') {
    e.preventDefault();
    $('#m-delete').click();
  } else if (e.key === 'Escape' || e.key === 'u') {
    box.cursorId = openId;
    navigate(`/inbox/${enc(box.name)}`);
  }
}

function onClick(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  // Only page routes are handled in-page; API links (the .eml download) stay real requests.
  if (!a || a.origin !== location.origin || a.hasAttribute('download') || a.target
      || a.pathname.startsWith('/api/') || a.getAttribute('href').startsWith('#')) return;
  e.preventDefault();
  navigate(a.pathname);
}

function onListClick(e) {
  const li = e.target.closest('li.msg');
  if (!li) return;
  box.cursorId = li.dataset.id;
  if (e.target.closest('.del')) deleteMessage(box.name, li.dataset.id);
}

/** Tabbing onto a row moves the highlight too, so `d` always acts on the row that has focus. */
function onListFocus(e) {
  const li = e.target.closest('li.msg');
  if (!li || li.dataset.id === box.cursorId) return;
  box.cursorId = li.dataset.id;
  renderList();
}

function goToName(raw) {
  const name = normalizeName(raw);
  if (!NAME_RE.test(name)) {
    showAlert('A mailbox name may contain only letters, digits, ".", "_" and "-" (at most 64).');
    return false;
  }
  navigate(`/inbox/${enc(name)}`);
  return true;
}

function wire() {
  document.addEventListener('keydown', onKey);
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', () => route(true));
  window.addEventListener('online', () => live.kick());
  $('#alert-close').addEventListener('click', clearAlert);

  $('#jump').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('#jump-name');
    if (goToName(input.value)) {
      input.value = '';
      input.blur();
    }
  });
  $('#home-form').addEventListener('submit', (e) => {
    e.preventDefault();
    goToName($('#home-name').value);
  });
  $('#home-name').addEventListener('input', updateHomeAddr);
  $('#random').addEventListener('click', () => {
    $('#home-name').value = randomName();
    updateHomeAddr();
    $('#home-name').focus();
  });

  $('#copy').addEventListener('click', (e) => copyText(e.currentTarget, address(box.name)));
  $('#copy-alias').addEventListener('click', (e) => copyText(e.currentTarget, address(box.alias)));
  $('#empty').addEventListener('click', emptyInbox);
  $('#list').addEventListener('click', onListClick);
  $('#list').addEventListener('focusin', onListFocus);

  $('#m-delete').addEventListener('click', async () => {
    const name = box.name;
    if (await deleteMessage(name, openId)) navigate(`/inbox/${enc(name)}`, true);
  });
  $('#remote-load').addEventListener('click', () => {
    $('#m-html').src = `${msgPath(box.name, openId)}/html?remote=1`;
    $('#remote-load').hidden = true;
    $('#remote-text').textContent = 'Remote images and styles are shown for this message.';
  });
  for (const t of TABS) {
    $(`#tab-${t}`).addEventListener('click', () => selectTab(t));
    $(`#tab-${t}`).addEventListener('keydown', onTabKey);
  }

  setInterval(refreshTimes, 30000);
}

async function main() {
  wire();
  await loadConfig();
  route();
}

main();

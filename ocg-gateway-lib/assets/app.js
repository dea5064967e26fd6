// OCG web UI: sign in, chat with streamed answers over one WebSocket, sessions,
// memory, scheduled jobs, status. Plain browser JavaScript: no build step, no dependencies.
//
// Safety: text from the model, tools or the server is never parsed as HTML.
// Every node is built with createElement/textContent; the Markdown renderer
// below produces only a whitelist of elements, and links only for http(s).
(() => {
  'use strict';

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);
  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** Build an element. `attrs`: class, text, on<event>, or plain attributes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value == null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = value;
        else if (key.startsWith('on') && typeof value === 'function') {
          node.addEventListener(key.slice(2), value);
        } else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child != null && child !== false) node.append(child); // strings become text nodes
    }
    return node;
  }

  const ICONS = {
    edit: ['M4 20h4L19 9a2.8 2.8 0 0 0-4-4L4 16v4z', 'M13.5 6.5l4 4'],
    trash: ['M4 7h16', 'M10 11v6M14 11v6', 'M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12', 'M9 7V5a1 1 0 0 1 1-1h4a1 1 0 0 1 1 1v2'],
    copy: ['M9 9h10v10H9z', 'M5 15V5h10'],
    check: ['M5 12l5 5L20 7'],
    tool: ['M14.7 6.3a4 4 0 0 0-5.4 5.2L4 16.8V20h3.2l5.3-5.3a4 4 0 0 0 5.2-5.4l-2.5 2.5-2.5-.5-.5-2.5z'],
    chevron: ['M9 6l6 6-6 6'],
    alert: ['M12 8v5', 'M12 16.5v.5', 'M10.3 3.9L2.5 18a2 2 0 0 0 1.7 3h15.6a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z'],
    x: ['M6 6l12 12M18 6L6 18'],
    clock: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M12 7.5V12l3 2'],
  };

  function icon(name, extraClass) {
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', extraClass ? `icon ${extraClass}` : 'icon');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    for (const d of ICONS[name]) {
      const path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      svg.append(path);
    }
    return svg;
  }

  function randomId(length) {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    const bytes = new Uint8Array(length);
    crypto.getRandomValues(bytes);
    let out = '';
    for (const b of bytes) out += alphabet[b % alphabet.length];
    return out;
  }

  let requestCounter = 0;
  const newRequestId = () => `r${++requestCounter}-${randomId(6)}`;

  const sessionPath = (key) => `/api/sessions/${encodeURIComponent(key)}`;

  function formatRelative(ms) {
    if (!ms) return '';
    const diff = Date.now() - ms;
    if (diff < 45e3) return 'just now';
    if (diff < 3600e3) return `${Math.max(1, Math.round(diff / 60e3))} min ago`;
    if (diff < 86400e3) return `${Math.round(diff / 3600e3)} h ago`;
    if (diff < 2 * 86400e3) return 'yesterday';
    const date = new Date(ms);
    const sameYear = date.getFullYear() === new Date().getFullYear();
    return date.toLocaleDateString(undefined, sameYear
      ? { month: 'short', day: 'numeric' }
      : { year: 'numeric', month: 'short', day: 'numeric' });
  }

  function formatTime(ms) {
    if (!ms) return '';
    return new Date(ms).toLocaleString(undefined, {
      month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
    });
  }

  function formatUptime(secs) {
    if (typeof secs !== 'number' || !isFinite(secs)) return '—';
    const s = Math.max(0, Math.floor(secs));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min ${s % 60} s`;
    return `${s} s`;
  }

  function prettyJson(value) {
    if (value === undefined) return '';
    if (typeof value === 'string') {
      try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
    }
    try { return JSON.stringify(value, null, 2); } catch { return String(value); }
  }

  const MAX_TOOL_TEXT = 20000;
  const clip = (text) => (text.length > MAX_TOOL_TEXT
    ? `${text.slice(0, MAX_TOOL_TEXT)}\n… (${text.length - MAX_TOOL_TEXT} more characters)`
    : text);

  let srTimer = 0;
  /** Say something to screen readers (polite). */
  function announce(text) {
    const region = $('sr-status');
    region.textContent = '';
    clearTimeout(srTimer);
    srTimer = setTimeout(() => { region.textContent = text; }, 50);
  }

  let toastTimer = 0;
  function toast(text) {
    const node = $('toast');
    node.textContent = text;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
  }

  async function copyText(text, from) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch { /* fall back below */ }
    // Fallback for plain-HTTP origins: select the rendered text and copy it.
    try {
      const selection = window.getSelection();
      const range = document.createRange();
      range.selectNodeContents(from);
      selection.removeAllRanges();
      selection.addRange(range);
      const ok = document.execCommand('copy');
      selection.removeAllRanges();
      return ok;
    } catch {
      return false;
    }
  }

  // ----------------------------------------------------------- markdown

  /**
   * A small, safe Markdown renderer. Produces only: p, br, strong, em, code,
   * pre (fenced code with a copy button), ul/ol/li, h3–h6, and a (http/https
   * only, target=_blank, rel=noopener noreferrer). All text goes in through
   * text nodes, so nothing the model writes is ever parsed as HTML.
   */
  const Markdown = (() => {
    const LIST_RE = /^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;
    const FENCE_RE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
    const HEADING_RE = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
    const BLANK_RE = /^[ \t]*$/;
    const PUNCT_RE = /[!-/:-@[-`{-~]/;
    const WORD_RE = /[\p{L}\p{N}]/u;

    const indentOf = (spaces) => spaces.replace(/\t/g, '    ').length;

    function safeUrl(raw) {
      try {
        const url = new URL(raw);
        return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
      } catch {
        return null;
      }
    }

    function link(href, text) {
      const a = el('a', { href, target: '_blank', rel: 'noopener noreferrer' });
      a.append(text);
      return a;
    }

    /** Plain text with newlines as <br>. */
    function appendText(parent, text) {
      const lines = text.split('\n');
      lines.forEach((line, i) => {
        if (i) parent.append(el('br'));
        if (line) parent.append(line);
      });
    }

    /** The closing delimiter of emphasis opened at `from`, or -1. */
    function findClose(src, from, delim) {
      const single = delim.length === 1;
      const ch = delim[0];
      for (let j = from + 1; j <= src.length - delim.length; j++) {
        if (src[j] === '\\') { j++; continue; }
        if (src[j] === '`') { // skip code spans
          const end = src.indexOf('`', j + 1);
          if (end === -1) return -1;
          j = end;
          continue;
        }
        if (!src.startsWith(delim, j)) continue;
        if (/\s/.test(src[j - 1])) continue;
        if (single) {
          if (src[j + 1] === ch) { j++; continue; } // a ** inside *…*
          if (ch === '_' && WORD_RE.test(src[j + 1] || '')) continue;
        } else {
          // In a run like `***`, the last two close (the first one ends an inner *…*).
          while (src[j + 2] === ch) j++;
          if (ch === '_' && WORD_RE.test(src[j + 2] || '')) continue;
        }
        return j;
      }
      return -1;
    }

    function inline(src, parent, inLink) {
      let buf = '';
      const flush = () => { if (buf) { appendText(parent, buf); buf = ''; } };
      let i = 0;
      while (i < src.length) {
        const c = src[i];
        // Backslash escapes.
        if (c === '\\' && i + 1 < src.length && PUNCT_RE.test(src[i + 1])) {
          buf += src[i + 1];
          i += 2;
          continue;
        }
        // Code spans: a run of n backticks up to the next run of exactly n.
        if (c === '`') {
          let n = 1;
          while (src[i + n] === '`') n++;
          let j = i + n;
          let close = -1;
          while ((j = src.indexOf('`', j)) !== -1) {
            let m = 1;
            while (src[j + m] === '`') m++;
            if (m === n) { close = j; break; }
            j += m;
          }
          if (close !== -1) {
            flush();
            let code = src.slice(i + n, close).replace(/\n/g, ' ');
            if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) {
              code = code.slice(1, -1);
            }
            parent.append(el('code', { text: code }));
            i = close + n;
            continue;
          }
          buf += src.slice(i, i + n);
          i += n;
          continue;
        }
        // Strong: **text** or __text__.
        if ((c === '*' || c === '_') && src[i + 1] === c && src[i + 2] && !/\s/.test(src[i + 2])
            && !(c === '_' && WORD_RE.test(src[i - 1] || ''))) {
          const close = findClose(src, i + 2, c + c);
          if (close !== -1) {
            flush();
            const strong = el('strong');
            inline(src.slice(i + 2, close), strong, inLink);
            parent.append(strong);
            i = close + 2;
            continue;
          }
        }
        // Emphasis: *text* or _text_.
        if ((c === '*' || c === '_') && src[i + 1] && !/\s/.test(src[i + 1]) && src[i + 1] !== c
            && !(c === '_' && WORD_RE.test(src[i - 1] || ''))) {
          const close = findClose(src, i, c);
          if (close !== -1 && close > i + 1) {
            flush();
            const em = el('em');
            inline(src.slice(i + 1, close), em, inLink);
            parent.append(em);
            i = close + 1;
            continue;
          }
        }
        // Links: [text](http(s)://…). Any other scheme stays literal text.
        if (c === '[' && !inLink) {
          const mid = src.indexOf('](', i + 1);
          const end = mid === -1 ? -1 : src.indexOf(')', mid + 2);
          if (mid !== -1 && end !== -1 && !src.slice(i + 1, mid).includes('\n')) {
            let target = src.slice(mid + 2, end).trim().split(/\s+/)[0] || '';
            if (target.startsWith('<') && target.endsWith('>')) target = target.slice(1, -1);
            const href = safeUrl(target);
            if (href) {
              flush();
              const a = link(href, '');
              inline(src.slice(i + 1, mid), a, true);
              if (!a.childNodes.length) a.append(target);
              parent.append(a);
              i = end + 1;
              continue;
            }
          }
        }
        // Bare URLs.
        if (!inLink && (c === 'h' || c === 'H') && (i === 0 || /[\s(<[{"'*_]/.test(src[i - 1]))) {
          const m = /^https?:\/\/[^\s<>"'`]+/i.exec(src.slice(i));
          if (m) {
            let url = m[0];
            while (/[.,;:!?*_)\]]$/.test(url)) {
              if (url.endsWith(')') && (url.match(/\(/g) || []).length >= (url.match(/\)/g) || []).length) break;
              url = url.slice(0, -1);
            }
            const href = safeUrl(url);
            if (href && url.length > 8) {
              flush();
              parent.append(link(href, url));
              i += url.length;
              continue;
            }
          }
        }
        buf += c;
        i++;
      }
      flush();
    }

    function codeBlock(code, lang) {
      const codeEl = el('code', { text: code });
      const pre = el('pre', { tabindex: '0' }, codeEl);
      const label = (lang || '').replace(/[^\w+#.-]/g, '').slice(0, 24);
      const button = el('button', {
        type: 'button', class: 'copy-btn', 'aria-label': label ? `Copy ${label} code` : 'Copy code',
      }, icon('copy'), el('span', { class: 'copy-label', text: 'Copy' }));
      button.addEventListener('click', async () => {
        const ok = await copyText(code, codeEl);
        const labelEl = button.querySelector('.copy-label');
        labelEl.textContent = ok ? 'Copied' : 'Copy failed';
        button.classList.toggle('copied', ok);
        announce(ok ? 'Code copied' : 'Could not copy');
        setTimeout(() => { labelEl.textContent = 'Copy'; button.classList.remove('copied'); }, 1600);
      });
      return el('div', { class: 'codeblock' },
        el('div', { class: 'codeblock-head' }, el('span', { class: 'codeblock-lang', text: label || 'code' }), button),
        pre);
    }

    function isBlockStart(line) {
      return FENCE_RE.test(line) || HEADING_RE.test(line) || LIST_RE.test(line);
    }

    function parseList(lines, start, container) {
      const first = LIST_RE.exec(lines[start]);
      const base = indentOf(first[1]);
      const ordered = /\d/.test(first[2]);
      const list = el(ordered ? 'ol' : 'ul');
      if (ordered) {
        const n = parseInt(first[2], 10);
        if (n !== 1) list.setAttribute('start', String(n));
      }
      let item = null;
      let text = [];
      const flushText = () => {
        if (item && text.length) {
          const span = el('span', { class: 'li-text' });
          inline(text.join('\n'), span, false);
          item.append(span);
        }
        text = [];
      };
      let i = start;
      while (i < lines.length) {
        const line = lines[i];
        const m = LIST_RE.exec(line);
        if (m) {
          const indent = indentOf(m[1]);
          if (indent < base) break;
          if (indent >= base + 2 && item) {
            flushText();
            i = parseList(lines, i, item);
            continue;
          }
          if (/\d/.test(m[2]) !== ordered) break;
          flushText();
          item = el('li');
          list.append(item);
          text = [m[3]];
          i++;
          continue;
        }
        if (BLANK_RE.test(line)) {
          let j = i + 1;
          while (j < lines.length && BLANK_RE.test(lines[j])) j++;
          const next = j < lines.length ? LIST_RE.exec(lines[j]) : null;
          if (next && indentOf(next[1]) >= base) { i = j; continue; }
          break;
        }
        if (item && (indentOf(/^[ \t]*/.exec(line)[0]) > base || !isBlockStart(line))) {
          text.push(line.trim());
          i++;
          continue;
        }
        break;
      }
      flushText();
      container.append(list);
      return i;
    }

    /** Render `src` into a DocumentFragment. */
    function render(src) {
      const frag = document.createDocumentFragment();
      const lines = String(src).replace(/\r\n?/g, '\n').split('\n');
      let para = [];
      const flushPara = () => {
        if (para.length) {
          const p = el('p');
          inline(para.join('\n'), p, false);
          frag.append(p);
          para = [];
        }
      };
      let i = 0;
      while (i < lines.length) {
        const line = lines[i];
        let m = FENCE_RE.exec(line);
        if (m) {
          flushPara();
          const fence = m[1];
          const closing = new RegExp('^ {0,3}' + fence[0] + '{' + fence.length + ',}[ \\t]*$');
          const body = [];
          i++;
          while (i < lines.length && !closing.test(lines[i])) body.push(lines[i++]);
          i++; // the closing fence (or the end of an unfinished stream)
          frag.append(codeBlock(body.join('\n'), m[2]));
          continue;
        }
        if (BLANK_RE.test(line)) { flushPara(); i++; continue; }
        m = HEADING_RE.exec(line);
        if (m) {
          flushPara();
          const h = el(`h${Math.min(6, m[1].length + 2)}`);
          inline(m[2], h, false);
          frag.append(h);
          i++;
          continue;
        }
        if (LIST_RE.test(line)) {
          flushPara();
          i = parseList(lines, i, frag);
          continue;
        }
        para.push(line);
        i++;
      }
      flushPara();
      return frag;
    }

    return { render, safeUrl };
  })();

  // ------------------------------------------------------------------ HTTP

  class HttpError extends Error {
    constructor(status, message, code) {
      super(message);
      this.status = status;
      this.code = code || '';
    }
  }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new HttpError(0, 'Cannot reach the gateway.');
    }
    if (response.status === 401) {
      sessionEnded();
      throw new HttpError(401, 'Signed out.', 'unauthorized');
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      let code = '';
      try {
        const data = await response.json();
        if (data && data.error) {
          message = data.error.message || message;
          code = data.error.code || '';
        }
      } catch { /* not JSON */ }
      throw new HttpError(response.status, message, code);
    }
    if (response.status === 204) return null;
    const type = response.headers.get('content-type') || '';
    return type.includes('json') ? response.json() : response.text();
  }

  // ----------------------------------------------------------------- state

  const state = {
    authed: false,
    view: 'chat',
    sessions: [],         // {key, title, updated_at_ms, messages, archived, local, titlePending}
    current: null,
    editing: null,        // key whose title is being edited
    editDraft: '',
    confirming: null,     // key whose deletion awaits confirmation
    turns: new Map(),     // request id -> Turn
    loadSeq: 0,
    // Number of session-list requests sent; a title set locally remembers it,
    // so a list that was asked for before the title changed cannot undo it.
    listSeq: 0,
    historyOffset: 0,
    ws: null,
    wsAttempts: 0,
    wsOpenedAt: 0,
    reconnectTimer: 0,
    countdownTimer: 0,
    pingTimer: 0,
    outbox: [],
    statusTimer: 0,
    statusLoading: false,
    stick: true,
    sessionsTimer: 0,
    // What the open chat shows of its stored history, to add what others
    // store there (scheduled runs, another tab): {key, count (entries from
    // offset 0 of the live history), archived, updated (ms), lastId, listSeq
    // (lists asked for up to then may predate it)}; null while it loads.
    shown: null,
    // Turns sent from this page, newest last, until the history holds them
    // (or it is clear it never will): the page shows them already.
    sent: [],
    syncing: false,
    syncAgain: false,
    chatPoll: 0,          // polling generation: a stopped poll never reschedules
    chatTimer: 0,
  };

  const STORAGE_KEY = 'ocg.currentSession';
  const PHONE = window.matchMedia('(max-width: 760px)');

  const findSession = (key) => state.sessions.find((s) => s.key === key) || null;
  const activeTurn = (key) => {
    for (const turn of state.turns.values()) if (turn.session === key && !turn.finished) return turn;
    return null;
  };
  const sessionLabel = (s) => (s.title && s.title.trim()) || (s.local ? 'New chat' : s.key);

  // ------------------------------------------------------------- sign in

  function showView(name) {
    $('boot').hidden = true;
    $('login-view').hidden = name !== 'login';
    $('app-view').hidden = name !== 'app';
  }

  function showLogin(message) {
    state.authed = false;
    showView('login');
    const error = $('login-error');
    error.textContent = message || '';
    error.classList.toggle('info', Boolean(message));
    $('token').focus();
  }

  async function onLogin(event) {
    event.preventDefault();
    const input = $('token');
    const button = $('login-btn');
    const error = $('login-error');
    error.classList.remove('info');
    const token = input.value.trim();
    if (!token) {
      error.textContent = 'Enter the access token.';
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    error.textContent = '';
    try {
      const response = await fetch('/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      if (response.ok) {
        input.value = '';
        enterApp();
        return;
      }
      if (response.status === 401) error.textContent = 'That token was not accepted. Check it and try again.';
      else if (response.status === 429) error.textContent = 'Too many attempts. Wait a minute, then try again.';
      else error.textContent = `Sign-in failed (HTTP ${response.status}).`;
      input.select();
      input.focus();
    } catch {
      error.textContent = 'Cannot reach the gateway. Is it running?';
    } finally {
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  }

  async function logout() {
    // Nothing more is asked for with the cookie that is going away.
    stopChatPolling();
    clearTimeout(state.sessionsTimer);
    state.shown = null;
    try {
      await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
    } catch { /* signed out locally all the same */ }
    teardown();
    showLogin('You are signed out.');
  }

  /** The cookie stopped working (logout elsewhere, token rotated). */
  function sessionEnded() {
    if (!state.authed) return;
    teardown();
    showLogin('Your session ended. Sign in again.');
  }

  function teardown() {
    state.authed = false;
    closeSocket();
    stopStatusPolling();
    clearTimeout(state.sessionsTimer);
    stopChatPolling();
    state.shown = null;
    state.sent = [];
    state.syncAgain = false;
    state.turns.clear();
    state.outbox = [];
    state.sessions = [];
    state.current = null;
    state.editing = null;
    state.confirming = null;
    resetMemoryView();
    resetCronView();
    resetPairingView();
    clearMessages();
    renderSessions();
  }

  function enterApp() {
    state.authed = true;
    state.wsAttempts = 0;
    state.wsOpenedAt = 0;
    showView('app');
    connectSocket();
    route(true);
    loadSessions(true);
  }

  // --------------------------------------------------------------- routing

  const VIEWS = { '#status': 'status', '#memory': 'memory', '#schedules': 'schedules' };
  const VIEW_TITLES = { status: 'Status · OCG', memory: 'Memory · OCG', schedules: 'Schedules · OCG' };

  /** Show the view the address names; `entering`: right after signing in (the chats load anyway). */
  function route(entering) {
    const view = VIEWS[location.hash] || 'chat';
    state.view = view;
    $('chat-view').hidden = view !== 'chat';
    $('status-view').hidden = view !== 'status';
    $('memory-view').hidden = view !== 'memory';
    $('schedules-view').hidden = view !== 'schedules';
    for (const name of ['chat', 'status', 'memory', 'schedules']) {
      $(`tab-${name}`).toggleAttribute('aria-current', false);
    }
    $(`tab-${view}`).setAttribute('aria-current', 'page');
    $('menu-btn').hidden = view !== 'chat';
    document.title = VIEW_TITLES[view] || 'OCG';
    if (view === 'memory') loadMemories();
    if (view === 'schedules') {
      refreshSessionChoices();
      startCronPolling();
    } else stopCronPolling();
    if (view === 'status') startStatusPolling();
    else {
      stopStatusPolling();
      closeDrawer(false);
    }
    if (view === 'chat') startChatPolling(entering !== true);
    else stopChatPolling();
  }

  // ---------------------------------------------------------------- drawer

  function syncDrawer() {
    const open = document.body.classList.contains('drawer-open');
    const sidebar = $('sidebar');
    $('menu-btn').setAttribute('aria-expanded', String(open));
    $('menu-btn').setAttribute('aria-label', open ? 'Hide chats' : 'Show chats');
    $('backdrop').hidden = !(open && PHONE.matches);
    sidebar.inert = PHONE.matches && !open;
  }

  function openDrawer() {
    document.body.classList.add('drawer-open');
    syncDrawer();
    const target = $('session-list').querySelector('[aria-current="true"]') || $('new-chat');
    target.focus();
  }

  function closeDrawer(focusMenu) {
    if (!document.body.classList.contains('drawer-open')) return;
    document.body.classList.remove('drawer-open');
    syncDrawer();
    if (focusMenu) $('menu-btn').focus();
  }

  // -------------------------------------------------------------- sessions

  /** A list entry's fields the sidebar shows, to skip renders that change nothing. */
  const sessionsShown = () => state.sessions
    .map((s) => [s.key, s.title, s.updated_at_ms, s.messages, s.local].join('\u0000')).join('\u0001');

  /**
   * Load the chat list. `selectAfter`: open the saved (or newest) chat after.
   * `poll`: a background refresh (the open chat's poll): no toasts, and no
   * re-render while a title is edited or a delete confirmed, or when nothing changed.
   */
  async function loadSessions(selectAfter, poll) {
    let list;
    const seq = ++state.listSeq;
    try {
      list = await api('GET', '/api/sessions');
    } catch (error) {
      // Offline shows in the connection badge; say more only when asked.
      if (!poll && error.status !== 401 && (selectAfter || error.status !== 0)) toast(`Could not load chats: ${error.message}`);
      list = null;
    }
    if (!state.authed) return;
    const before = poll ? sessionsShown() : '';
    let sync = null;
    if (Array.isArray(list)) {
      const known = new Map(state.sessions.map((s) => [s.key, s]));
      // A job's fresh session per run (`cron:<job>:<run>`) is read on the Schedules page.
      const fresh = list.filter((s) => s && typeof s.key === 'string' && !s.key.startsWith('cron:')).map((s) => {
        const old = known.get(s.key);
        const entry = {
          key: s.key,
          title: s.title || null,
          updated_at_ms: Number(s.updated_at_ms) || 0,
          messages: Number(s.messages) || 0,
          archived: Number(s.archived) || 0,
          local: false,
          titlePending: false,
        };
        // A rename made while the first turn was running is applied after it,
        // and a list asked for before the last local title change is stale.
        if (old && (old.titlePending || old.titleSeq >= seq)) {
          entry.title = old.title;
          entry.titlePending = old.titlePending;
          entry.titleSeq = old.titleSeq;
        }
        return entry;
      });
      const freshKeys = new Set(fresh.map((s) => s.key));
      // Chats not started yet exist only here; keep the open one even if the
      // list lags behind.
      const locals = state.sessions.filter((s) => (s.local || s.key === state.current) && !freshKeys.has(s.key));
      state.sessions = [...locals, ...fresh];
      sortSessions();
      // The open chat: add what was stored there since it was shown.
      const open = !selectAfter && fresh.find((s) => s.key === state.current);
      if (open) sync = syncCurrent(open, seq);
    }
    if (selectAfter) {
      const saved = localStorage.getItem(STORAGE_KEY);
      const pick = (saved && findSession(saved)) || state.sessions[0];
      if (pick) selectSession(pick.key);
      else newChat(false);
    } else if (!poll || (!state.editing && !state.confirming && sessionsShown() !== before)) {
      renderSessions();
      renderChatHead();
    }
    if (sync) await sync;
  }

  function refreshSessionsSoon() {
    clearTimeout(state.sessionsTimer);
    state.sessionsTimer = setTimeout(() => loadSessions(false), 400);
  }

  function sortSessions() {
    state.sessions.sort((a, b) => (b.updated_at_ms || 0) - (a.updated_at_ms || 0) || a.key.localeCompare(b.key));
  }

  function renderSessions() {
    const list = $('session-list');
    const focusedKey = document.activeElement && document.activeElement.closest
      && document.activeElement.closest('.session') ? document.activeElement.closest('.session').dataset.key : null;
    const focusedRole = focusedKey ? document.activeElement.dataset.role : null;
    state.rendering = true;
    try {
      list.replaceChildren(...state.sessions.map(sessionItem));
    } finally {
      state.rendering = false;
    }
    $('sessions-empty').hidden = state.sessions.length > 0;
    if (state.editing) {
      const input = list.querySelector('.session-rename input');
      if (input) {
        input.focus();
        if (state.editFresh) input.select(); // typing replaces the old title
        else input.setSelectionRange(input.value.length, input.value.length);
        state.editFresh = false;
      }
    } else if (state.confirming) {
      const cancel = list.querySelector('.session-confirm [data-role="cancel"]');
      if (cancel) cancel.focus();
    } else if (focusedKey) {
      const item = [...list.children].find((li) => li.dataset.key === focusedKey);
      const target = item && (item.querySelector(`[data-role="${focusedRole}"]`) || item.querySelector('.session-main'));
      if (target) target.focus();
    }
  }

  function sessionItem(s) {
    const label = sessionLabel(s);
    const active = s.key === state.current;
    const li = el('li', { class: `session${active ? ' active' : ''}` });
    li.dataset.key = s.key;
    const busy = activeTurn(s.key);

    if (state.editing === s.key) {
      const input = el('input', {
        type: 'text', class: 'field sm', maxlength: '200', 'aria-label': 'Chat title', value: state.editDraft,
      });
      input.value = state.editDraft;
      let done = false;
      const finish = (save) => {
        if (done) return;
        done = true;
        state.editing = null;
        if (save) renameSession(s.key, input.value);
        else renderSessions();
      };
      input.addEventListener('input', () => { state.editDraft = input.value; });
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); finish(true); }
        else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); finish(false); }
      });
      // A re-render replaces this input; the old one's blur (which may come
      // after the render) must not end the edit.
      input.addEventListener('blur', () => { if (!state.rendering && input.isConnected) finish(true); });
      const form = el('form', { class: 'session-rename', onsubmit: (e) => { e.preventDefault(); finish(true); } }, input);
      li.append(form);
      return li;
    }

    if (state.confirming === s.key) {
      const cancel = () => { state.confirming = null; renderSessions(); };
      const box = el('div', { class: 'session-confirm', role: 'group', 'aria-label': `Delete “${label}”?` },
        el('span', { class: 'confirm-text', text: `Delete “${label.length > 40 ? `${label.slice(0, 39)}…` : label}”?` }),
        el('button', {
          type: 'button', class: 'btn danger sm', 'data-role': 'confirm-delete',
          onclick: () => { state.confirming = null; deleteSession(s.key); },
        }, 'Delete'),
        el('button', { type: 'button', class: 'btn ghost sm', 'data-role': 'cancel', onclick: cancel }, 'Cancel'));
      box.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); cancel(); } });
      li.append(box);
      return li;
    }

    const meta = [];
    if (busy) meta.push('answering…');
    else if (s.local) meta.push('not started');
    else {
      if (s.updated_at_ms) meta.push(formatRelative(s.updated_at_ms));
      if (s.messages) meta.push(`${s.messages} message${s.messages === 1 ? '' : 's'}`);
    }
    const main = el('button', {
      type: 'button', class: 'session-main', 'data-role': 'open', title: s.title ? `${s.title} (${s.key})` : s.key,
      'aria-current': active ? 'true' : null,
      onclick: () => selectSession(s.key, true),
    },
    el('span', { class: 'session-title', text: label }),
    el('span', { class: 'session-meta', text: meta.join(' · ') }));
    const rename = el('button', {
      type: 'button', class: 'icon-btn sm', 'data-role': 'rename', 'aria-label': `Rename “${label}”`, title: 'Rename',
      onclick: () => {
        state.editing = s.key;
        state.editDraft = s.title || '';
        state.editFresh = true;
        state.confirming = null;
        renderSessions();
      },
    }, icon('edit'));
    const del = el('button', {
      type: 'button', class: 'icon-btn sm danger-hover', 'data-role': 'delete', 'aria-label': `Delete “${label}”`, title: 'Delete',
      onclick: () => {
        state.confirming = s.key;
        state.editing = null;
        renderSessions();
      },
    }, icon('trash'));
    li.append(main, el('div', { class: 'session-actions' }, rename, del));
    if (busy) li.classList.add('busy');
    return li;
  }

  async function renameSession(key, rawTitle, force) {
    const s = findSession(key);
    const title = rawTitle.trim().replace(/\s+/g, ' ').slice(0, 200);
    if (!s || !title || (title === s.title && !force)) { renderSessions(); return; }
    const previous = s.title;
    s.title = title;
    s.titleSeq = state.listSeq;
    renderSessions();
    renderChatHead();
    // Pending until the gateway confirms: a session list fetched before the
    // rename landed must not bring the old title back.
    s.titlePending = true;
    if (s.local) return; // applied after its first answer
    try {
      await api('POST', `${sessionPath(key)}/rename`, { title });
      const current = findSession(key);
      if (current) {
        current.titlePending = false;
        // Lists asked for while the rename was on its way may predate it.
        current.titleSeq = state.listSeq;
      }
      announce(`Renamed to ${title}`);
    } catch (error) {
      if (error.status === 401) return;
      const current = findSession(key);
      if (current) {
        current.title = previous;
        current.titlePending = false;
      }
      renderSessions();
      renderChatHead();
      toast(`Could not rename: ${error.message}`);
    }
  }

  async function deleteSession(key) {
    const s = findSession(key);
    if (!s) return;
    // Nothing more is fetched for it (a history asked for now would be a 404).
    if (state.shown && state.shown.key === key) state.shown = null;
    const turn = activeTurn(key);
    if (turn) cancelTurn(turn);
    if (!s.local) {
      try {
        await api('DELETE', sessionPath(key));
      } catch (error) {
        if (error.status === 401) return;
        if (error.status !== 404) {
          toast(`Could not delete: ${error.message}`);
          renderSessions();
          return;
        }
      }
    }
    state.sessions = state.sessions.filter((x) => x.key !== key);
    announce(`Deleted ${sessionLabel(s)}`);
    if (state.current === key) {
      const next = state.sessions[0];
      if (next) selectSession(next.key);
      else newChat(false);
    } else renderSessions();
  }

  function newChat(focus) {
    const current = findSession(state.current);
    if (current && current.local && !activeTurn(current.key) && !$('messages').querySelector('.msg')) {
      // The current chat is already empty: reuse it.
      closeDrawer(false);
      if (focus) $('input').focus();
      return;
    }
    const s = {
      key: `web:${randomId(12)}`,
      title: null,
      updated_at_ms: Date.now(),
      messages: 0,
      archived: 0,
      local: true,
      titlePending: false,
    };
    state.sessions.unshift(s);
    selectSession(s.key, false);
    if (focus) $('input').focus();
  }

  function renderChatHead() {
    const s = findSession(state.current);
    $('chat-title').textContent = s ? sessionLabel(s) : 'New chat';
    $('chat-key').textContent = s && !s.local ? s.key : '';
  }

  async function selectSession(key, fromUser) {
    const s = findSession(key);
    if (!s) return;
    state.current = key;
    try { localStorage.setItem(STORAGE_KEY, key); } catch { /* private mode */ }
    renderSessions();
    renderChatHead();
    if (fromUser) closeDrawer(false);
    const seq = ++state.loadSeq;
    state.shown = null;
    clearMessages();
    updateComposer();
    if (s.local) {
      state.shown = { key, count: 0, archived: 0, updated: 0, lastId: 0, listSeq: state.listSeq };
    } else {
      const loading = el('div', { class: 'loading-row' }, el('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading messages…');
      $('messages').append(loading);
      setEmpty(false);
      const limit = 500;
      const offset = Math.max(0, (s.messages || 0) - limit);
      let history;
      try {
        history = await api('GET', `${sessionPath(key)}/history?offset=${offset}&limit=${limit}`);
      } catch (error) {
        if (seq !== state.loadSeq) return;
        loading.remove();
        if (error.status === 401) return;
        if (error.status === 404) {
          $('messages').append(noticeRow('This chat no longer exists.'));
        } else {
          $('messages').append(noticeRow(`Could not load this chat: ${error.message}`, () => selectSession(key)));
        }
        return;
      }
      if (seq !== state.loadSeq) return;
      loading.remove();
      state.historyOffset = offset;
      const entries = Array.isArray(history) ? history : [];
      state.shown = {
        key,
        count: offset + entries.length,
        archived: s.archived || 0,
        updated: s.updated_at_ms || 0,
        lastId: maxId(entries, 0),
        listSeq: state.listSeq,
      };
      const frag = renderHistory(entries);
      if (offset > 0) $('messages').append(earlierButton(key));
      $('messages').append(frag);
    }
    // What this page sent here and is done with is in the history just shown
    // (or never will be); turns still streaming are not in it yet.
    state.sent = state.sent.filter((t) => t.session !== key || !t.finished);
    for (const turn of state.turns.values()) {
      if (turn.session === key && !turn.finished) $('messages').append(turn.userNode, turn.view.root);
    }
    setEmpty(!$('messages').querySelector('.msg'));
    scrollToBottom(true);
    updateComposer();
    if (fromUser && !PHONE.matches) $('input').focus();
  }

  function earlierButton(key) {
    const button = el('button', { type: 'button', class: 'btn ghost sm earlier' }, 'Show earlier messages');
    button.addEventListener('click', async () => {
      const end = state.historyOffset;
      const start = Math.max(0, end - 500);
      button.disabled = true;
      try {
        const page = await api('GET', `${sessionPath(key)}/history?offset=${start}&limit=${end - start}`);
        if (state.current !== key) return;
        state.historyOffset = start;
        const box = $('messages');
        const before = box.scrollHeight;
        const frag = renderHistory(Array.isArray(page) ? page : []);
        const anchor = button.nextSibling;
        button.remove();
        if (start > 0) box.insertBefore(earlierButton(key), anchor);
        box.insertBefore(frag, anchor);
        box.scrollTop += box.scrollHeight - before;
      } catch (error) {
        button.disabled = false;
        if (error.status !== 401) toast(`Could not load earlier messages: ${error.message}`);
      }
    });
    return el('div', { class: 'earlier-row' }, button);
  }

  function noticeRow(text, retry) {
    return el('div', { class: 'notice-row' }, el('span', { text }),
      retry ? el('button', { type: 'button', class: 'btn ghost sm', onclick: retry }, 'Retry') : null);
  }

  // -------------------------------------------------------------- messages

  function clearMessages() {
    const box = $('messages');
    const empty = $('empty-chat');
    box.replaceChildren(empty);
    setEmpty(true);
  }

  function setEmpty(isEmpty) {
    $('empty-chat').hidden = !isEmpty;
  }

  function isNearBottom() {
    const box = $('messages');
    return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  }

  function scrollToBottom(force) {
    const box = $('messages');
    if (force || isNearBottom()) box.scrollTop = box.scrollHeight;
  }

  function userMessage(text, at) {
    return el('article', { class: 'msg user' },
      el('span', { class: 'sr-only', text: 'You said:' }),
      el('div', { class: 'bubble', title: at ? formatTime(at) : null, text }));
  }

  function toolChip(name, args) {
    const stateEl = el('span', { class: 'tool-state', text: 'running' });
    const details = el('details', { class: 'tool running' });
    const summary = el('summary', { class: 'tool-summary' },
      icon('chevron', 'tool-chevron'),
      icon('tool'),
      el('span', { class: 'tool-name', text: name || 'tool' }),
      stateEl);
    const body = el('div', { class: 'tool-body' });
    if (args !== undefined) {
      body.append(el('div', { class: 'tool-label', text: 'Arguments' }),
        el('pre', { class: 'tool-pre', text: clip(prettyJson(args)) }));
    }
    details.append(summary, body);
    return {
      root: details,
      setResult(result, ok) {
        details.classList.remove('running');
        details.classList.add(ok === false ? 'failed' : ok === true ? 'ok' : 'done');
        stateEl.textContent = ok === false ? 'failed' : ok === true ? 'ok' : 'done';
        if (result != null && result !== '') {
          body.append(el('div', { class: 'tool-label', text: ok === false ? 'Error' : 'Result' }),
            el('pre', { class: 'tool-pre', text: clip(typeof result === 'string' ? result : prettyJson(result)) }));
        }
      },
    };
  }

  /** An assistant answer: text parts and tool groups, in the order they came. */
  class AnswerView {
    constructor() {
      this.parts = [];
      this.body = el('div', { class: 'msg-body' });
      this.root = el('article', { class: 'msg assistant' },
        el('span', { class: 'sr-only', text: 'Assistant:' }),
        el('div', { class: 'avatar', 'aria-hidden': 'true' }),
        this.body);
      this.frame = 0;
      this.typing = null;
    }

    setTyping(on) {
      if (on && !this.typing) {
        this.typing = el('div', { class: 'typing', 'aria-label': 'Thinking' },
          el('span'), el('span'), el('span'));
        this.body.append(this.typing);
      } else if (!on && this.typing) {
        this.typing.remove();
        this.typing = null;
      }
    }

    setStreaming(on) {
      this.root.classList.toggle('streaming', on);
      this.root.setAttribute('aria-busy', on ? 'true' : 'false');
      if (!on) this.setTyping(false);
    }

    textPart(fresh) {
      let last = this.parts[this.parts.length - 1];
      if (fresh || !last || last.kind !== 'text') {
        last = { kind: 'text', text: '', node: el('div', { class: 'md' }) };
        this.parts.push(last);
        this.body.insertBefore(last.node, this.typing);
      }
      return last;
    }

    appendDelta(text) {
      if (!text) return;
      this.setTyping(false);
      const part = this.textPart(false);
      part.text += text;
      this.schedule(part);
    }

    appendText(text) {
      const part = this.textPart(true);
      part.text = text;
      this.renderPart(part);
    }

    schedule(part) {
      this.pending = part;
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => this.flush());
    }

    flush() {
      if (this.frame) cancelAnimationFrame(this.frame);
      this.frame = 0;
      if (this.pending) {
        const stick = this.root.isConnected && isNearBottom();
        this.renderPart(this.pending);
        this.pending = null;
        if (stick) scrollToBottom(true);
      }
    }

    renderPart(part) {
      part.node.replaceChildren(Markdown.render(part.text));
    }

    addTool(name, args) {
      this.flush();
      let last = this.parts[this.parts.length - 1];
      if (!last || last.kind !== 'tools') {
        last = { kind: 'tools', node: el('div', { class: 'tools' }) };
        this.parts.push(last);
        this.body.insertBefore(last.node, this.typing);
      }
      const chip = toolChip(name, args);
      last.node.append(chip.root);
      return chip;
    }

    hasText() {
      return this.parts.some((p) => p.kind === 'text' && p.text.trim());
    }

    note(text, kind) {
      this.body.append(el('div', { class: `msg-note ${kind || ''}`.trim(), text }));
    }

    error(code, message) {
      this.flush();
      const box = el('div', { class: 'error-box', role: 'alert' },
        icon('alert'),
        el('div', {},
          el('div', { class: 'error-title', text: errorTitle(code) }),
          el('div', { class: 'error-text', text: message || 'Something went wrong.' }),
          code && code !== 'disconnected' ? el('div', { class: 'error-code', text: code }) : null));
      this.body.append(box);
    }
  }

  function errorTitle(code) {
    const c = String(code || '');
    if (c === 'disconnected') return 'Connection lost';
    if (c.startsWith('llm')) return 'The model could not answer';
    if (c === 'unavailable' || c === 'agent_unavailable') return 'The agent is unavailable';
    if (c === 'cancelled' || c === 'canceled') return 'Stopped';
    if (c === 'invalid_input' || c === 'bad_request') return 'The request was not accepted';
    if (c === 'unauthorized') return 'Not signed in';
    return 'Something went wrong';
  }

  /**
   * A scheduled run's prompt (the job's message, then a last line
   * `[Scheduled job “name”, due <time>.…]`) as {name, due, message}, or null.
   */
  function scheduledPrompt(content) {
    const marker = content.lastIndexOf('[Scheduled job');
    if (marker === -1 || !content.trimEnd().endsWith(']')) return null;
    if (marker > 0 && content[marker - 1] !== '\n') return null;
    const head = content.slice(marker).trim();
    const message = content.slice(0, marker).trim();
    let name = '';
    let rest = head;
    const open = head.indexOf('\u201c');
    const close = head.lastIndexOf('\u201d');
    if (open !== -1 && close > open) {
      name = head.slice(open + 1, close);
      rest = head.slice(close + 1);
    } else {
      const plain = /^\[Scheduled job "(.*)"(?=,)/.exec(head); // straight quotes too
      if (plain) {
        name = plain[1];
        rest = head.slice(plain[0].length);
      }
    }
    const due = /^,\s*due (.+?)\.(?:\s|\]|$)/.exec(rest);
    return { name: name.trim(), due: due ? due[1] : '', message };
  }

  /** A scheduled run's prompt: a small notice, not a message the user typed. */
  function scheduledNotice(info, at) {
    const name = info.name || (info.message ? info.message.split('\n')[0].slice(0, 60) : '') || 'a scheduled job';
    const when = info.due ? `Due ${info.due}` : at ? formatTime(at) : null;
    const showMessage = info.message && info.message !== name;
    return el('article', { class: 'msg scheduled', title: when },
      el('div', { class: 'scheduled-note' },
        icon('clock'),
        el('span', { class: 'scheduled-label' }, 'Scheduled: ', el('span', { class: 'scheduled-name', text: name }))),
      showMessage ? el('div', { class: 'scheduled-message', title: clip(info.message), text: info.message }) : null);
  }

  function renderHistory(entries) {
    const frag = document.createDocumentFragment();
    let answer = null;
    const chips = new Map();
    for (const m of entries) {
      if (!m || typeof m !== 'object') continue;
      const content = typeof m.content === 'string' ? m.content : '';
      if (m.role === 'user') {
        const scheduled = scheduledPrompt(content);
        frag.append(scheduled ? scheduledNotice(scheduled, m.created_at_ms) : userMessage(content, m.created_at_ms));
        answer = null;
      } else if (m.role === 'assistant') {
        if (!answer) {
          answer = new AnswerView();
          frag.append(answer.root);
        }
        if (content) answer.appendText(content);
        for (const call of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
          chips.set(call.id, answer.addTool(call.name, call.arguments));
        }
        if (m.created_at_ms) answer.root.title = formatTime(m.created_at_ms);
      } else if (m.role === 'tool') {
        const chip = chips.get(m.tool_call_id);
        if (chip) chip.setResult(content, null);
        else {
          if (!answer) {
            answer = new AnswerView();
            frag.append(answer.root);
          }
          answer.addTool('tool', undefined).setResult(content, null);
        }
      }
      // System messages are not shown.
    }
    return frag;
  }

  // ------------------------------------------------- messages from elsewhere

  // While the chat is shown, the open chat follows its stored history: turns
  // that ran elsewhere (a scheduled job in this session, another tab) appear
  // without a reload. Turns of this page are shown by their stream already.
  const CHAT_POLL_MS = 5000;
  const SYNC_PAGE = 200;
  const SENT_KEEP = 50;           // turns of this page remembered at most
  const SENT_FAILED_MS = 120e3;   // how long a broken-off turn may still be stored

  const maxId = (entries, from) => entries.reduce((max, m) => (m && Number.isFinite(m.id) && m.id > max ? m.id : max), from);

  function startChatPolling(now) {
    stopChatPolling();
    if (!state.authed || state.view !== 'chat' || document.visibilityState !== 'visible') return;
    const generation = state.chatPoll;
    const live = () => generation === state.chatPoll && state.authed && state.view === 'chat'
      && document.visibilityState === 'visible';
    const tick = async () => {
      state.chatTimer = 0;
      if (!live()) return;
      try {
        // A turn running here shows itself; the list is read again when it ends.
        if (!activeTurn(state.current)) await loadSessions(false, true);
      } finally {
        if (live()) state.chatTimer = setTimeout(tick, CHAT_POLL_MS);
      }
    };
    state.chatTimer = setTimeout(tick, now ? 0 : CHAT_POLL_MS);
  }

  function stopChatPolling() {
    state.chatPoll++;
    clearTimeout(state.chatTimer);
    state.chatTimer = 0;
  }

  /**
   * Bring the open chat up to date with `info`, its entry in a session list
   * asked for as request `listSeq`: fetch the history after what is shown and
   * add what this page did not show itself.
   */
  async function syncCurrent(info, listSeq) {
    const shown = state.shown;
    if (!shown || shown.key !== info.key || state.current !== info.key) return;
    if (listSeq <= shown.listSeq) return; // asked for before what is shown was read
    if (activeTurn(info.key)) return;     // its end reads the list again
    if (state.syncing) {
      state.syncAgain = true;
      return;
    }
    // Cleared or rewritten (a reset): show it afresh, as a reload would.
    if (info.archived < shown.archived || info.messages + info.archived < shown.count + shown.archived) {
      selectSession(info.key);
      return;
    }
    // Compaction archived the oldest messages: offsets count live ones only.
    const shift = info.archived - shown.archived;
    if (shift > 0) {
      shown.count = Math.max(0, shown.count - shift);
      shown.archived = info.archived;
      state.historyOffset = Math.max(0, state.historyOffset - shift);
    }
    if (info.messages <= shown.count && info.updated_at_ms <= shown.updated) return;
    state.syncing = true;
    const asked = Date.now();
    try {
      for (;;) {
        const askedPage = Date.now();
        const page = await api('GET', `${sessionPath(info.key)}/history?offset=${shown.count}&limit=${SYNC_PAGE}`);
        if (state.shown !== shown || state.current !== info.key) return;
        const entries = Array.isArray(page) ? page : [];
        shown.count += entries.length;
        shown.listSeq = state.listSeq;
        addArrived(info.key, entries, askedPage, entries.length >= SYNC_PAGE);
        if (entries.length < SYNC_PAGE) break;
      }
      shown.updated = Math.max(shown.updated, info.updated_at_ms);
      // A turn of this page that ended before the history was read and is not
      // in it was not stored (a command such as /compact, a failure).
      state.sent = state.sent.filter((t) => t.session !== info.key || !t.finished
        || t.endedAt >= asked - (t.done ? 0 : SENT_FAILED_MS));
    } catch {
      // Offline, or deleted elsewhere: the next poll tells.
    } finally {
      state.syncing = false;
      if (state.syncAgain) {
        state.syncAgain = false;
        refreshSessionsSoon();
      }
    }
  }

  /** The turn this page sent that stored `text` as its user message, taken off the list. */
  function takeSent(key, text) {
    const same = (a) => a === text || a.trim() === text.trim();
    const index = state.sent.findIndex((t) => t.session === key && same(t.text));
    return index === -1 ? null : state.sent.splice(index, 1)[0];
  }

  /**
   * Show history entries of `key` (the open chat) stored after what is shown,
   * read from a request sent at `asked` (`more`: a full page, more may follow):
   * turns that ran elsewhere are added, in order, before this page's turns
   * the history does not hold yet.
   */
  function addArrived(key, entries, asked, more) {
    const shown = state.shown;
    const fresh = entries.filter((m) => m && typeof m === 'object'
      && !(Number.isFinite(m.id) && m.id > 0 && m.id <= shown.lastId));
    shown.lastId = maxId(entries, shown.lastId);
    if (!fresh.length) return;
    // Turns: a user message and what answered it.
    const groups = [];
    for (const m of fresh) {
      if (m.role === 'user' || !groups.length) groups.push([m]);
      else groups[groups.length - 1].push(m);
    }
    const box = $('messages');
    const stick = isNearBottom();
    const pending = document.createDocumentFragment();
    let last = null; // the newest node of this page's turns the history holds
    const arrived = [];
    for (const group of groups) {
      const first = group[0];
      const mine = first.role === 'user' && typeof first.content === 'string' ? takeSent(key, first.content) : null;
      const placed = Boolean(mine && mine.userNode.isConnected);
      if (placed && (mine.done || !mine.finished)) {
        // Streamed here: what arrived before it goes before it.
        box.insertBefore(pending, mine.userNode);
        last = mine.view.root;
        continue;
      }
      const frag = renderHistory(group);
      if (placed) {
        // Its stream broke off here, yet it was stored: show it as stored.
        box.insertBefore(pending, mine.userNode);
        last = frag.lastChild || last;
        box.insertBefore(frag, mine.userNode);
        mine.userNode.remove();
        mine.view.root.remove();
        continue;
      }
      pending.append(frag);
      arrived.push(group);
    }
    // Before this page's turns still on their way into the history.
    const after = (node) => !last || Boolean(last.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING);
    const next = state.sent.find((t) => t.session === key && t.userNode.isConnected
      && (!t.finished || (t.done && (more || t.endedAt >= asked))) && after(t.userNode));
    if (next) box.insertBefore(pending, next.userNode);
    else box.append(pending);
    setEmpty(!box.querySelector('.msg'));
    if (stick) scrollToBottom(true);
    announceArrived(arrived);
  }

  /** Tell screen readers that answers arrived from elsewhere. */
  function announceArrived(groups) {
    const answered = groups.filter((g) => g.some((m) => m.role === 'assistant' && typeof m.content === 'string' && m.content.trim()));
    if (!answered.length) return;
    const group = answered[answered.length - 1];
    const reply = group.filter((m) => m.role === 'assistant' && typeof m.content === 'string' && m.content.trim()).pop().content.trim();
    const snippet = reply.length > 120 ? `${reply.slice(0, 119)}…` : reply;
    const prompt = group[0].role === 'user' && typeof group[0].content === 'string' ? scheduledPrompt(group[0].content) : null;
    const from = prompt ? ` from the scheduled job “${prompt.name || 'unnamed'}”` : '';
    const count = answered.length > 1 ? `${answered.length} new answers in this chat. The last` : 'New answer in this chat';
    announce(`${count}${from}: ${snippet}`);
  }

  // --------------------------------------------------------------- turns

  function send() {
    const input = $('input');
    const text = input.value;
    if (!text.trim() || !state.authed) return;
    let s = findSession(state.current);
    if (!s) {
      newChat(false);
      s = findSession(state.current);
    }
    if (activeTurn(s.key)) return;
    const id = newRequestId();
    const view = new AnswerView();
    view.setStreaming(true);
    view.setTyping(true);
    const turn = {
      id,
      session: s.key,
      text,
      view,
      userNode: userMessage(text, Date.now()),
      tools: new Map(),
      finished: false,
      done: false,        // ended with its answer (so it is stored)
      endedAt: 0,
      sent: false,
    };
    state.turns.set(id, turn);
    // The history gets it later; the open chat's poll must not show it twice.
    state.sent.push(turn);
    if (state.sent.length > SENT_KEEP) {
      const old = state.sent.findIndex((t) => t.finished);
      state.sent.splice(old === -1 ? 0 : old, 1);
    }
    setEmpty(false);
    $('messages').append(turn.userNode, view.root);
    scrollToBottom(true);
    input.value = '';
    autoGrow();
    s.updated_at_ms = Date.now();
    sortSessions();
    renderSessions();
    updateComposer();
    announce('Message sent. Waiting for the answer.');
    socketSend({ type: 'chat', id, session: s.key, text }, turn);
  }

  function handleEvent(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'pong' || msg.type === 'ping') return;
    if (msg.type === 'error' && msg.id == null) {
      // About the connection, not a request: the socket closes next.
      if (['unauthorized', 'rate_limited', 'timeout'].includes(msg.code)) verifyAuth();
      else toast(`The gateway could not read a message: ${msg.message || msg.code || 'error'}`);
      return;
    }
    const turn = state.turns.get(msg.id);
    if (!turn || turn.finished) return;
    const view = turn.view;
    const visible = turn.session === state.current;
    const stick = visible && isNearBottom();
    switch (msg.type) {
      case 'delta':
        view.appendDelta(typeof msg.text === 'string' ? msg.text : '');
        break;
      case 'tool_start': {
        view.setTyping(false);
        const chip = view.addTool(msg.name, msg.arguments);
        turn.tools.set(msg.tool_id != null ? msg.tool_id : `#${turn.tools.size}`, chip);
        view.setTyping(true);
        break;
      }
      case 'tool_end': {
        let chip = turn.tools.get(msg.tool_id);
        if (!chip) chip = view.addTool(msg.name, undefined);
        chip.setResult(msg.result, msg.ok !== false);
        if (msg.ok === false) announce(`Tool ${msg.name || ''} failed`);
        break;
      }
      case 'done':
        finishTurn(turn, msg);
        break;
      case 'error':
        failTurn(turn, msg.code, msg.message);
        break;
      default:
        return;
    }
    if (stick && msg.type !== 'delta') scrollToBottom(true);
  }

  function endTurn(turn) {
    turn.finished = true;
    turn.endedAt = Date.now();
    state.turns.delete(turn.id);
    turn.view.flush();
    turn.view.setStreaming(false);
    const s = findSession(turn.session);
    if (s) renderSessions();
    updateComposer();
  }

  function finishTurn(turn, msg) {
    const message = msg.message && typeof msg.message === 'object' ? msg.message : null;
    if (message && typeof message.content === 'string' && message.content && !turn.view.hasText()) {
      turn.view.appendText(message.content);
    }
    if (!turn.view.hasText() && !turn.tools.size) turn.view.note('(no text in the answer)', 'muted');
    turn.done = true;
    endTurn(turn);
    if (msg.usage && typeof msg.usage.total_tokens === 'number') {
      turn.view.root.title = `${msg.usage.total_tokens} tokens`;
    }
    announce('Answer complete.');
    const key = typeof msg.session_key === 'string' && msg.session_key ? msg.session_key : turn.session;
    const s = findSession(turn.session);
    if (s) {
      const wasLocal = s.local;
      s.local = false;
      s.updated_at_ms = Date.now();
      s.messages = (s.messages || 0) + 2;
      if (key !== s.key && !findSession(key)) {
        if (state.current === s.key) state.current = key;
        if (state.shown && state.shown.key === s.key) state.shown.key = key;
        for (const t of state.sent) if (t.session === s.key) t.session = key;
        s.key = key;
      }
      sortSessions();
      renderSessions();
      renderChatHead();
      if (s.titlePending && s.title) renameSession(s.key, s.title, true);
      else if (wasLocal && !s.title) autoTitle(s, turn.text);
    }
    refreshSessionsSoon();
    if (turn.session === state.current) scrollToBottom(false);
  }

  /** Name a new chat after its first message, as a person would. */
  async function autoTitle(s, text) {
    let title = text.trim().split('\n')[0].replace(/\s+/g, ' ');
    if (!title) return;
    if (title.length > 48) title = `${title.slice(0, 47).trimEnd()}…`;
    s.title = title;
    s.titleSeq = state.listSeq;
    renderSessions();
    renderChatHead();
    try {
      await api('POST', `${sessionPath(s.key)}/rename`, { title });
      s.titleSeq = state.listSeq;
    } catch {
      // Untitled is fine: the list shows its key.
      if (s.title === title) s.title = null;
      renderSessions();
      renderChatHead();
    }
  }

  function failTurn(turn, code, message) {
    turn.view.setTyping(false);
    if (code === 'cancelled' || code === 'canceled') turn.view.note('Stopped.', 'muted');
    else turn.view.error(code, message);
    endTurn(turn);
    announce(`Error: ${message || errorTitle(code)}`);
    refreshSessionsSoon();
  }

  function cancelTurn(turn) {
    if (!turn || turn.finished) return;
    if (turn.sent) socketSend({ type: 'cancel', id: turn.id });
    else state.outbox = state.outbox.filter((item) => item.frame.id !== turn.id);
    turn.view.setTyping(false);
    turn.view.note('Stopped.', 'muted');
    endTurn(turn);
    announce('Stopped.');
  }

  function updateComposer() {
    const busy = Boolean(state.current && activeTurn(state.current));
    const hasText = Boolean($('input').value.trim());
    $('stop-btn').hidden = !busy;
    $('send-btn').hidden = busy;
    $('send-btn').disabled = !hasText;
  }

  function autoGrow() {
    // field-sizing: content does the work where supported; rows is the fallback.
    const input = $('input');
    const lines = input.value.split('\n').length;
    input.rows = Math.min(8, Math.max(1, lines));
    updateComposer();
  }

  // ------------------------------------------------------------ WebSocket

  function setConn(stateName, text) {
    const conn = $('conn');
    conn.dataset.state = stateName;
    $('conn-text').textContent = text;
    conn.title = text;
  }

  function connectSocket() {
    if (!state.authed) return;
    if (state.ws && (state.ws.readyState === WebSocket.CONNECTING || state.ws.readyState === WebSocket.OPEN)) return;
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    setConn('connecting', 'Connecting…');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/chat/stream`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', () => {
      if (state.ws !== ws) return;
      const reconnected = state.wsOpenedAt > 0;
      state.wsOpenedAt = Date.now();
      setConn('online', 'Connected');
      if (reconnected) refreshSessionsSoon();
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'ping' }));
      }, 25000);
      const queued = state.outbox;
      state.outbox = [];
      for (const item of queued) socketSend(item.frame, item.turn);
    });
    ws.addEventListener('message', (event) => {
      if (state.ws !== ws || typeof event.data !== 'string') return;
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      handleEvent(msg);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      state.ws = null;
      clearInterval(state.pingTimer);
      // Answers in flight on this socket are lost with it.
      for (const turn of [...state.turns.values()]) {
        if (turn.sent && !turn.finished) {
          failTurn(turn, 'disconnected', 'The connection dropped before the answer finished. Reopen the chat to see whether it was saved.');
        }
      }
      if (!state.authed) return;
      if (Date.now() - state.wsOpenedAt > 10000) state.wsAttempts = 0;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    const attempt = state.wsAttempts++;
    const delay = Math.round(Math.min(15000, 500 * 2 ** attempt) * (0.8 + Math.random() * 0.4));
    const until = Date.now() + delay;
    const tick = () => {
      const secs = Math.max(1, Math.ceil((until - Date.now()) / 1000));
      setConn('offline', `Offline · retrying in ${secs} s`);
    };
    tick();
    state.countdownTimer = setInterval(tick, 1000);
    state.reconnectTimer = setTimeout(async () => {
      clearInterval(state.countdownTimer);
      if (!state.authed) return;
      // Repeated failures may mean the cookie no longer works.
      if (attempt >= 1) await verifyAuth();
      connectSocket();
    }, delay);
  }

  /** Sign out here when the cookie no longer works (token rotated, logout elsewhere). */
  async function verifyAuth() {
    try {
      const me = await fetch('/api/me', { credentials: 'same-origin' });
      if (me.status === 401) sessionEnded();
    } catch { /* unreachable: the reconnect loop keeps trying */ }
  }

  function reconnectNow() {
    if (!state.authed || state.ws) return;
    state.wsAttempts = 0;
    connectSocket();
  }

  function closeSocket() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    clearInterval(state.pingTimer);
    const ws = state.ws;
    state.ws = null;
    if (ws) {
      try { ws.close(1000, 'bye'); } catch { /* already closed */ }
    }
    setConn('connecting', 'Connecting…');
  }

  function socketSend(frame, turn) {
    const ws = state.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      if (turn) turn.sent = true;
      return;
    }
    if (frame.type === 'chat') state.outbox.push({ frame, turn });
    connectSocket();
  }

  // --------------------------------------------------------------- status

  function startStatusPolling() {
    stopStatusPolling();
    loadStatus();
    state.statusTimer = setInterval(() => {
      if (document.visibilityState === 'visible' && state.view === 'status') loadStatus();
    }, 5000);
  }

  function stopStatusPolling() {
    clearInterval(state.statusTimer);
    state.statusTimer = 0;
  }

  async function loadStatus() {
    if (state.statusLoading || !state.authed) return;
    state.statusLoading = true;
    try {
      const pairingSeq = ++pairing.seq;
      const [data, channels, requests, mcp] = await Promise.all([
        api('GET', '/api/status'),
        api('GET', '/api/channels').catch(() => null),
        api('GET', '/api/pairing').catch(() => null),
        api('GET', '/api/mcp').catch(() => null),
      ]);
      if (!state.authed) return;
      renderStatus(data, null);
      renderChannels(channels);
      renderMcp(mcp);
      if (pairingSeq === pairing.seq) renderPairing(requests);
    } catch (error) {
      if (error.status !== 401) renderStatus(null, error);
    } finally {
      state.statusLoading = false;
    }
  }

  const STATUS_WORDS = { ok: 'OK', degraded: 'Degraded', unhealthy: 'Unhealthy' };
  const badge = (status) => el('span', {
    class: `badge ${['ok', 'degraded', 'unhealthy'].includes(status) ? status : 'unknown'}`,
    text: STATUS_WORDS[status] || String(status || 'unknown'),
  });

  function reportCard(title, report) {
    const card = el('section', { class: 'status-card', 'aria-label': title });
    const head = el('div', { class: 'status-card-head' }, el('h3', { text: title }));
    card.append(head);
    if (!report || typeof report !== 'object') {
      head.append(badge('unknown'));
      card.append(el('p', { class: 'muted', text: 'No report.' }));
      return card;
    }
    head.append(badge(report.status));
    const facts = el('dl', { class: 'facts' });
    const fact = (name, value) => facts.append(el('div', { class: 'fact' }, el('dt', { text: name }), el('dd', { text: value })));
    fact('Version', report.version || '—');
    fact('Uptime', formatUptime(report.uptime_secs));
    fact('PID', report.pid ? String(report.pid) : '—');
    card.append(facts);
    const checks = Array.isArray(report.checks) ? report.checks : [];
    card.append(el('h4', { class: 'checks-title', text: 'Checks' }));
    if (!checks.length) card.append(el('p', { class: 'muted', text: 'No checks reported.' }));
    else {
      card.append(el('ul', { class: 'checks' }, ...checks.map((check) => el('li', { class: `check ${check.status || ''}` },
        el('span', { class: 'check-name', text: check.name || '?' }),
        badge(check.status),
        check.detail ? el('span', { class: 'check-detail', text: check.detail }) : null))));
    }
    return card;
  }

  function renderStatus(data, error) {
    const summary = $('status-summary');
    const cards = $('status-cards');
    const stamp = new Date().toLocaleTimeString();
    $('status-updated').textContent = `Updated ${stamp} · every 5 s`;
    if (error) {
      summary.className = 'status-summary unhealthy';
      summary.textContent = `Could not load the status: ${error.message}`;
      return;
    }
    const gateway = data && data.gateway;
    const agent = data && data.agent;
    const problems = [];
    for (const [name, report] of [['gateway', gateway], ['agent', agent]]) {
      if (!report) { problems.push(`${name}: no report`); continue; }
      for (const check of report.checks || []) {
        // The gateway's `agent` check repeats the agent's own report.
        if (name === 'gateway' && check.name === 'agent' && agent) continue;
        if (check.status && check.status !== 'ok') problems.push(`${name} · ${check.name}${check.detail ? `: ${check.detail}` : ''}`);
      }
      if (report.status !== 'ok' && !(report.checks || []).some((c) => c.status !== 'ok')) problems.push(`${name}: ${report.status}`);
    }
    const worst = [gateway, agent].some((r) => !r || r.status === 'unhealthy') ? 'unhealthy'
      : [gateway, agent].some((r) => r.status !== 'ok') ? 'degraded' : 'ok';
    summary.className = `status-summary ${worst}`;
    summary.replaceChildren(el('strong', {
      text: worst === 'ok' ? 'All systems working' : worst === 'degraded' ? 'Partly working' : 'Not working',
    }));
    if (problems.length) summary.append(el('ul', { class: 'problems' }, ...problems.map((p) => el('li', { text: p }))));
    cards.replaceChildren(reportCard('Gateway', gateway), reportCard('Agent', agent));
  }

  // Chat channels (Telegram, …): state, traffic and the last error.
  const CHANNEL_STATES = { connected: ['ok', 'Connected'], connecting: ['degraded', 'Connecting'], failing: ['unhealthy', 'Failing'], stopped: ['unhealthy', 'Stopped'] };
  const channelTime = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

  /**
   * The cards of a list the status view shows (channels, MCP servers): a note
   * when it is unavailable or empty, else one card per item with its state
   * badge (`states`: state → [tone, word]) and the facts `describe` gives:
   * [[name, value], …], then any extra nodes.
   */
  function renderStateCards(box, items, { kind, states, unavailable, empty, describe }) {
    if (!Array.isArray(items)) {
      box.replaceChildren(el('p', { class: 'muted', text: unavailable }));
      return;
    }
    if (!items.length) {
      box.replaceChildren(el('p', { class: 'muted', text: empty }));
      return;
    }
    box.replaceChildren(...items.map((item) => {
      const [tone, word] = states[item.state] || ['unknown', String(item.state || 'unknown')];
      const card = el('section', { class: `status-card ${kind}-card`, 'aria-label': item.name, [`data-${kind}`]: item.name },
        el('div', { class: 'status-card-head' }, el('h3', { text: item.name }), el('span', { class: `badge ${tone}`, text: word })));
      const { facts, extra } = describe(item);
      card.append(el('dl', { class: 'facts' }, ...facts.map(([name, value]) => el('div', { class: 'fact' }, el('dt', { text: name }), el('dd', { text: value })))));
      for (const node of extra) if (node) card.append(node);
      return card;
    }));
  }

  function renderChannels(channels) {
    renderStateCards($('channel-cards'), channels, {
      kind: 'channel',
      states: CHANNEL_STATES,
      unavailable: 'Channel status unavailable.',
      empty: 'No chat channels configured (set TELEGRAM_BOT_TOKEN to add Telegram).',
      describe: (channel) => ({
        facts: [
          ['Mode', channel.mode || '—'],
          ['Last message', channelTime(channel.last_message_at_ms)],
          ['Received / sent', `${channel.received || 0} / ${channel.sent || 0}`],
          ['Waiting', String(channel.pending || 0)],
          ['Errors', String(channel.errors || 0)],
          ['Last error at', channelTime(channel.last_error_at_ms)],
        ],
        extra: [channel.last_error ? el('p', { class: 'check-detail channel-error', text: channel.last_error }) : null],
      }),
    });
  }

  // MCP servers of the agent's mcp.json (docs/mcp.md): state, restarts and
  // the tools they give the model. Names and details are only ever text.
  const MCP_STATES = { running: ['ok', 'Running'], starting: ['degraded', 'Starting'], failed: ['unhealthy', 'Failed'], disabled: ['unknown', 'Disabled'] };

  function renderMcp(servers) {
    renderStateCards($('mcp-cards'), servers, {
      kind: 'mcp',
      states: MCP_STATES,
      unavailable: 'MCP status unavailable.',
      empty: 'No MCP servers configured (add them to mcp.json in the data directory).',
      describe: (server) => {
        const tools = Array.isArray(server.tools) ? server.tools : [];
        return {
          facts: [
            ['Transport', server.transport || '—'],
            ['Tools', String(tools.length)],
            ['Restarts', String(server.restarts || 0)],
          ],
          extra: [
            server.detail ? el('p', { class: 'check-detail', text: server.detail }) : null,
            tools.length ? el('ul', { class: 'mcp-tools' }, ...tools.map((name) => el('li', { text: name }))) : null,
          ],
        };
      },
    });
  }

  // Pairing: strangers who wrote to a channel directly got a one-time code and
  // wait here for the owner to approve or deny it (docs/channels.md). Who they
  // say they are comes from the chat network: it is only ever set as text.
  const pairing = {
    seq: 0,            // lists asked for; only the newest answer is shown
    requests: null,    // the list shown (null: unavailable)
    busy: new Set(),   // codes with an approve or deny on its way
    shown: '',         // what the list shows, so a poll with no change keeps it (and the focus)
    focusAfter: null,  // where the focus goes at the next render: {code, action}, 'first' (or the title)
  };

  /** The section after the channels, built once with its click handler. */
  function pairingSection() {
    let section = $('pairing');
    if (section) return section;
    section = el('section', { id: 'pairing', class: 'pairing', 'aria-labelledby': 'pairing-title' },
      el('h3', { id: 'pairing-title', class: 'channels-title', tabindex: '-1', text: 'Pairing requests' }),
      el('p', { id: 'pairing-outcome', class: 'pairing-outcome', role: 'status' }),
      el('div', { id: 'pairing-list', class: 'pairing-list' }));
    $('channel-cards').after(section);
    $('pairing-list').addEventListener('click', (e) => {
      const button = e.target.closest('button[data-action]');
      const item = button && button.closest('.pairing-request');
      const request = item && (pairing.requests || []).find((r) => r.code === item.dataset.code);
      if (request) answerPairing(request, button.dataset.action);
    });
    return section;
  }

  function resetPairingView() {
    Object.assign(pairing, { requests: null, shown: '', focusAfter: null });
    pairing.seq++;
    pairing.busy.clear();
    if (!$('pairing')) return;
    $('pairing-outcome').replaceChildren();
    $('pairing-outcome').className = 'pairing-outcome';
    $('pairing-list').replaceChildren();
  }

  function expiresIn(ms) {
    const left = (Number(ms) || 0) - Date.now();
    if (left <= 60e3) return 'expires in under a minute';
    if (left > 2 * 3600e3) return `expires in ${Math.round(left / 3600e3)} h`;
    return `expires in ${Math.ceil(left / 60e3)} min`;
  }

  async function loadPairing() {
    if (!state.authed) return;
    const seq = ++pairing.seq;
    let requests = null;
    try {
      requests = await api('GET', '/api/pairing');
    } catch (error) {
      if (error.status === 401) return;
    }
    if (seq === pairing.seq && state.authed) renderPairing(requests);
  }

  function pairingItem(request) {
    const sender = String(request.sender || request.entry || '?');
    const channel = String(request.channel || '?');
    const busy = pairing.busy.has(request.code);
    const facts = el('dl', { class: 'facts' });
    const fact = (name, value, cls) => facts.append(el('div', { class: 'fact', 'data-fact': name.toLowerCase().replace(/\s+/g, '-') },
      el('dt', { text: name }), el('dd', { class: cls, text: value })));
    fact('Approval adds', String(request.entry || '—'), 'pairing-entry');
    fact('Code', String(request.code), 'pairing-code');
    fact('Expires', expiresIn(request.expires_at_ms).replace(/^expires /, ''), 'pairing-expires');
    const asked = request.created_at_ms ? `Asked ${formatRelative(request.created_at_ms)}` : '';
    return el('li', {
      class: 'status-card pairing-request',
      'data-code': request.code,
      'data-channel': channel,
      'aria-label': `${sender} on ${channel}`,
      'aria-busy': busy ? 'true' : null,
    },
    el('div', { class: 'status-card-head' },
      el('h4', { class: 'pairing-sender', text: sender }),
      el('span', { class: 'badge pairing-channel', text: channel })),
    facts,
    el('div', { class: 'pairing-actions' },
      el('button', { type: 'button', class: 'btn primary sm', 'data-action': 'approve', disabled: busy, 'aria-label': `Approve ${sender} on ${channel}`, text: 'Approve' }),
      el('button', { type: 'button', class: 'btn sm', 'data-action': 'deny', disabled: busy, 'aria-label': `Deny ${sender} on ${channel}`, text: 'Deny' }),
      asked ? el('span', { class: 'pairing-asked muted', text: asked }) : null));
  }

  function renderPairing(requests) {
    pairingSection();
    const box = $('pairing-list');
    const list = Array.isArray(requests) ? requests.filter((r) => r && typeof r.code === 'string' && r.code) : null;
    pairing.requests = list;
    const shown = list ? JSON.stringify(list.map((r) => [r.code, r.sender, r.entry, r.channel,
      expiresIn(r.expires_at_ms), formatRelative(r.created_at_ms), pairing.busy.has(r.code)])) : 'unavailable';
    if (shown === pairing.shown && !pairing.focusAfter) return;
    pairing.shown = shown;
    // Keep the focus on the same button when the list is built again.
    const active = document.activeElement;
    let focus = pairing.focusAfter;
    pairing.focusAfter = null;
    if (!focus && active && box.contains(active)) {
      const item = active.closest('.pairing-request');
      focus = item && active.dataset.action ? { code: item.dataset.code, action: active.dataset.action } : 'title';
    }
    if (!list) {
      box.replaceChildren(el('p', { class: 'muted', text: 'Pairing requests unavailable.' }));
    } else if (!list.length) {
      box.replaceChildren(el('p', { class: 'muted pairing-empty' },
        'No one is waiting for approval. Strangers who write to a channel get a code; approve it here or with ',
        el('code', { text: 'ocg pair approve CODE' }), '.'));
    } else {
      box.replaceChildren(el('ul', { class: 'status-cards pairing-requests' }, ...list.map(pairingItem)));
    }
    if (!focus) return;
    const buttons = [...box.querySelectorAll('button[data-action]')].filter((b) => !b.disabled);
    const target = focus === 'first' ? buttons[0]
      : typeof focus === 'object' ? buttons.find((b) => b.dataset.action === focus.action && b.closest('.pairing-request').dataset.code === focus.code)
        : null;
    (target || $('pairing-title')).focus();
  }

  function pairingOutcome(tone, text) {
    const node = $('pairing-outcome');
    node.className = `pairing-outcome ${tone}`;
    node.textContent = text;
  }

  /** Approve or deny a code, say what happened, and list the requests again. */
  async function answerPairing(request, action) {
    if ((action !== 'approve' && action !== 'deny') || pairing.busy.has(request.code)) return;
    const { code } = request;
    const sender = String(request.sender || request.entry || code);
    pairing.busy.add(code);
    pairing.shown = ''; // the next list is built again, with these buttons enabled or gone
    for (const item of document.querySelectorAll('#pairing-list .pairing-request')) {
      if (item.dataset.code !== code) continue;
      item.setAttribute('aria-busy', 'true');
      for (const button of item.querySelectorAll('button[data-action]')) button.disabled = true;
    }
    pairingOutcome('', `${action === 'approve' ? 'Approving' : 'Denying'} ${sender}…`);
    try {
      const done = (await api('POST', `/api/pairing/${encodeURIComponent(code)}/${action}`)) || request;
      const who = String(done.sender || sender);
      const channel = String(done.channel || request.channel || '');
      pairingOutcome('ok', action === 'approve'
        ? `Approved ${who} on ${channel}: ${String(done.entry || request.entry)} was added to its allow-list.`
        : `Denied ${who} on ${channel}. They get no new code for the rest of the hour.`);
      pairing.focusAfter = 'first';
    } catch (error) {
      if (error.status === 401) return;
      pairingOutcome('bad', `Could not ${action} ${sender} (${code}): ${error.message}`);
      pairing.focusAfter = { code, action };
    } finally {
      pairing.busy.delete(code);
    }
    await loadPairing();
  }

  // ---------------------------------------------------------------- memory

  const MEMORY_PAGE = 20;
  const memory = {
    offset: 0,
    total: 0,
    query: '',        // the search shown, '' for the newest-first list
    items: [],
    confirming: null, // id whose deletion awaits confirmation
    seq: 0,
  };

  function resetMemoryView() {
    Object.assign(memory, { offset: 0, total: 0, query: '', items: [], confirming: null });
    $('memory-list').replaceChildren();
    $('memory-query').value = '';
    $('memory-note').textContent = '';
    $('memory-count').textContent = '';
  }

  /** Load the current page (or search) and render it; stale answers are dropped. */
  async function loadMemories() {
    if (!state.authed) return;
    const seq = ++memory.seq;
    const note = $('memory-note');
    try {
      if (memory.query) {
        const data = await api('GET', `/api/memory/search?q=${encodeURIComponent(memory.query)}&limit=50`);
        if (seq !== memory.seq) return;
        memory.items = Array.isArray(data && data.memories) ? data.memories : [];
        memory.total = memory.items.length;
      } else {
        const data = await api('GET', `/api/memory?offset=${memory.offset}&limit=${MEMORY_PAGE}`);
        if (seq !== memory.seq) return;
        memory.items = Array.isArray(data && data.memories) ? data.memories : [];
        memory.total = typeof data.total === 'number' ? data.total : memory.items.length;
        if (!memory.items.length && memory.offset > 0) {
          memory.offset = Math.max(0, memory.offset - MEMORY_PAGE);
          loadMemories();
          return;
        }
      }
      note.textContent = '';
      note.className = 'memory-note';
    } catch (error) {
      if (seq !== memory.seq || error.status === 401) return;
      memory.items = [];
      note.className = 'memory-note bad';
      note.textContent = error.status === 501
        ? 'This agent does not keep long-term memory.'
        : `Could not load memories: ${error.message}`;
    }
    renderMemories();
  }

  function renderMemories() {
    const list = $('memory-list');
    const searching = Boolean(memory.query);
    $('memory-clear').hidden = !searching;
    $('memory-count').textContent = searching
      ? `${memory.items.length} found`
      : `${memory.total} ${memory.total === 1 ? 'memory' : 'memories'}`;
    list.replaceChildren(...memory.items.map(memoryItem));
    if (!memory.items.length && !$('memory-note').textContent) {
      list.append(el('li', {
        class: 'memory-empty',
        text: searching ? 'No memory matches that search.' : 'Nothing remembered yet.',
      }));
    }
    const pager = $('memory-pager');
    pager.hidden = searching || memory.total <= MEMORY_PAGE;
    if (!pager.hidden) {
      const last = Math.min(memory.offset + memory.items.length, memory.total);
      $('memory-page').textContent = `${memory.offset + 1}–${last} of ${memory.total}`;
      $('memory-prev').disabled = memory.offset === 0;
      $('memory-next').disabled = memory.offset + MEMORY_PAGE >= memory.total;
    }
  }

  function memoryItem(m) {
    const item = el('li', { class: 'memory-item', 'data-id': m.id });
    const meta = el('div', { class: 'memory-meta' },
      el('span', { class: 'memory-category', text: m.category || 'fact' }),
      el('span', { class: 'memory-importance-value', text: `importance ${Number(m.importance || 0).toFixed(1)}` }),
      el('span', { text: m.source === 'agent' ? 'by the assistant' : 'by you' }),
      el('time', {
        datetime: m.updated_at_ms ? new Date(m.updated_at_ms).toISOString() : null,
        title: formatTime(m.updated_at_ms),
        text: formatRelative(m.updated_at_ms),
      }),
      typeof m.score === 'number' ? el('span', { class: 'memory-score', text: `match ${m.score.toFixed(2)}` }) : null);
    item.append(el('p', { class: 'memory-text-value', text: m.text || '' }), meta);
    if (memory.confirming === m.id) {
      const cancel = () => { memory.confirming = null; renderMemories(); };
      const preview = (m.text || '').length > 60 ? `${m.text.slice(0, 59)}…` : (m.text || '');
      const row = el('div', { class: 'memory-confirm', role: 'group', 'aria-label': 'Confirm deletion' },
        el('span', { class: 'confirm-text', text: `Forget “${preview}”?` }),
        el('button', { type: 'button', class: 'btn danger sm memory-confirm-delete', text: 'Forget', onclick: () => deleteMemory(m.id) }),
        el('button', { type: 'button', class: 'btn ghost sm', text: 'Cancel', onclick: cancel }));
      row.addEventListener('keydown', (e) => { if (e.key === 'Escape') cancel(); });
      item.append(row);
      setTimeout(() => row.querySelector('.memory-confirm-delete').focus(), 0);
    } else {
      const remove = el('button', {
        type: 'button',
        class: 'icon-btn memory-delete',
        'aria-label': `Forget: ${(m.text || '').slice(0, 60)}`,
        title: 'Forget',
        onclick: () => { memory.confirming = m.id; renderMemories(); },
      }, icon('trash'));
      meta.append(remove);
    }
    return item;
  }

  async function deleteMemory(id) {
    memory.confirming = null;
    try {
      await api('DELETE', `/api/memory/${encodeURIComponent(id)}`);
      announce('Memory forgotten.');
    } catch (error) {
      if (error.status === 401) return;
      if (error.status !== 404) toast(`Could not forget it: ${error.message}`);
    }
    memory.items = memory.items.filter((m) => m.id !== id);
    loadMemories();
  }

  async function addMemory(event) {
    event.preventDefault();
    const textBox = $('memory-text');
    const error = $('memory-add-error');
    const text = textBox.value.trim();
    error.textContent = '';
    if (!text) {
      error.textContent = 'Write the fact to remember first.';
      textBox.focus();
      return;
    }
    const body = { text };
    const category = $('memory-category').value.trim();
    if (category) body.category = category;
    const importance = $('memory-importance').value.trim();
    if (importance) {
      const value = Number(importance);
      if (!Number.isFinite(value) || value < 0 || value > 1) {
        error.textContent = 'Importance is a number from 0 to 1.';
        $('memory-importance').focus();
        return;
      }
      body.importance = value;
    }
    const button = $('memory-add-btn');
    button.disabled = true;
    try {
      const stored = await api('POST', '/api/memory', body);
      textBox.value = '';
      announce(stored && stored.updated ? 'Memory updated.' : 'Memory added.');
      memory.query = '';
      $('memory-query').value = '';
      memory.offset = 0;
      await loadMemories();
    } catch (failure) {
      if (failure.status !== 401) {
        error.textContent = failure.status === 501
          ? 'This agent does not keep long-term memory.'
          : `Not saved: ${failure.message}`;
      }
    } finally {
      button.disabled = false;
    }
  }

  function searchMemories(event) {
    event.preventDefault();
    memory.query = $('memory-query').value.trim();
    memory.offset = 0;
    memory.confirming = null;
    loadMemories();
  }

  function bindMemory() {
    $('memory-add').addEventListener('submit', addMemory);
    $('memory-search').addEventListener('submit', searchMemories);
    $('memory-clear').addEventListener('click', () => {
      $('memory-query').value = '';
      searchMemories(new Event('submit'));
    });
    $('memory-prev').addEventListener('click', () => {
      memory.offset = Math.max(0, memory.offset - MEMORY_PAGE);
      loadMemories();
    });
    $('memory-next').addEventListener('click', () => {
      memory.offset += MEMORY_PAGE;
      loadMemories();
    });
  }

  // ------------------------------------------------------------- schedules

  const CRON_POLL_MS = 5000;   // while the page is shown
  const CRON_FAST_MS = 1500;   // while a run is asked for or running
  const CRON_RUNS = 10;        // runs shown per job
  const CRON_TEXT_MAX = 4000;  // characters of a reply or error shown
  const cron = {
    jobs: [],
    runs: new Map(),      // job id -> [JobRun], newest first (open disclosures)
    runErrors: new Map(), // job id -> why its runs did not load
    open: new Set(),      // job ids whose runs are shown
    waiting: new Map(),   // job id -> {occurrence, asked}: a run asked for, not yet ended
    busy: new Set(),      // job ids with a request in flight
    confirming: null,     // id whose deletion awaits confirmation
    focusConfirm: false,
    focusAfter: null,     // {id, role} or 'form': where focus goes after a render
    unsupported: false,
    seq: 0,
    poll: 0,              // polling generation: a stopped poll never reschedules
    timer: 0,
    shown: '',            // what the list shows, to skip needless re-renders
  };

  const RUN_WORDS = { running: 'Running', ok: 'OK', error: 'Failed', interrupted: 'Interrupted', skipped: 'Skipped' };
  const RUN_TONES = { running: 'running', ok: 'ok', error: 'unhealthy', interrupted: 'degraded', skipped: 'unknown' };
  const TRIGGER_WORDS = { schedule: 'on schedule', manual: 'run now', retry: 'retry' };
  const LOCAL_TIME_RE = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)$/;
  const cronPath = (id) => `/api/cron/${encodeURIComponent(id)}`;
  const domId = (id) => String(id).replace(/[^\w-]/g, '_');
  const isoOf = (ms) => (Number.isFinite(ms) ? new Date(ms).toISOString() : null);
  const jobName = (job) => (job.name && job.name.trim()) || job.message || job.id;
  /** Change a (live) text only when it differs: a poll must not re-announce it. */
  const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };
  const clipText = (text) => (text.length > CRON_TEXT_MAX
    ? `${text.slice(0, CRON_TEXT_MAX)}… (${text.length - CRON_TEXT_MAX} more characters)`
    : text);

  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch { return ''; }
  }

  /** A local date and time with the weekday, and the year when not this one. */
  function formatWhen(ms) {
    if (!Number.isFinite(ms)) return '—';
    const date = new Date(ms);
    const options = { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    if (date.getFullYear() !== new Date().getFullYear()) options.year = 'numeric';
    return date.toLocaleString(undefined, options);
  }

  /** How far ahead `ms` is: "in 5 min", "in 2 h 10 min", "in 3 days". */
  function formatUntil(ms) {
    const diff = ms - Date.now();
    if (diff <= 0) return 'due now';
    if (diff < 60e3) return 'in less than a minute';
    const minutes = Math.floor(diff / 60e3);
    if (minutes < 60) return `in ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return minutes % 60 && hours < 10 ? `in ${hours} h ${minutes % 60} min` : `in ${hours} h`;
    const days = Math.round(diff / 86400e3);
    return days === 1 ? 'in 1 day' : `in ${days} days`;
  }

  function scheduleWords(s) {
    if (!s || typeof s !== 'object') return 'unknown schedule';
    if (s.kind === 'every') return `every ${s.every}`;
    if (s.kind === 'cron') return `cron ${s.expr}${s.tz ? ` (${s.tz})` : ''}`;
    if (s.kind === 'at') {
      const ms = Date.parse(s.at);
      return `once at ${Number.isFinite(ms) ? formatWhen(ms) : s.at}`;
    }
    return String(s.kind || 'unknown schedule');
  }

  function sessionWords(session) {
    if (!session || session.kind !== 'named') return 'a fresh session each run';
    const known = findSession(session.key);
    return known && known.title ? `chat “${known.title}” (${session.key})` : session.key;
  }

  function deliveryWords(target, session) {
    if (!target) {
      return session && session.kind === 'named' ? 'nowhere: the reply stays in the run and the chat' : 'nowhere: the reply stays with the run';
    }
    if (target.kind === 'chat') return `${target.channel} chat ${target.chat_id}${target.thread_id ? `, thread ${target.thread_id}` : ''}`;
    if (target.kind === 'webhook') return `webhook ${target.url}`;
    return String(target.kind || 'unknown');
  }

  /** [badge tone, word] of a job. */
  function jobState(job) {
    if (!job.enabled) {
      const stopped = job.disable_after_failures > 0 && job.consecutive_failures >= job.disable_after_failures;
      return stopped ? ['unhealthy', `Stopped after ${job.consecutive_failures} failures`] : ['degraded', 'Paused'];
    }
    if (job.last_status === 'running') return ['running', 'Running'];
    if (job.next_run_ms == null) return ['unknown', job.last_run_ms ? 'Done' : 'No next run'];
    if (job.consecutive_failures > 0) return ['unhealthy', 'Failing'];
    return ['ok', 'Active'];
  }

  function resetCronView() {
    stopCronPolling();
    Object.assign(cron, { jobs: [], confirming: null, focusConfirm: false, focusAfter: null, unsupported: false, shown: '' });
    for (const key of ['runs', 'runErrors', 'open', 'waiting', 'busy']) cron[key].clear();
    $('cron-list').replaceChildren();
    $('cron-note').textContent = '';
    $('cron-count').textContent = '';
    $('cron-updated').textContent = '';
    $('cron-add-error').textContent = '';
    $('cron-add-btn').disabled = false;
  }

  function startCronPolling() {
    stopCronPolling();
    const generation = cron.poll;
    const tick = async () => {
      const live = () => generation === cron.poll && state.authed && state.view === 'schedules';
      if (!live()) return;
      if (document.visibilityState === 'visible') await loadCron();
      if (!live() || cron.unsupported) return;
      cron.timer = setTimeout(tick, cronBusy() ? CRON_FAST_MS : CRON_POLL_MS);
    };
    tick();
  }

  function stopCronPolling() {
    cron.poll++;
    clearTimeout(cron.timer);
    cron.timer = 0;
  }

  /** Load now (and poll on from here) when the page is shown. */
  function refreshCron() {
    if (state.view === 'schedules') startCronPolling();
  }

  /** Poll faster while a run is asked for or running. */
  function cronBusy() {
    if (cron.waiting.size) return true;
    // A run still "running" after ten minutes (an agent that died) is not worth polling fast for.
    if (cron.jobs.some((job) => job.last_status === 'running' && Date.now() - job.last_run_ms < 600e3)) return true;
    for (const id of cron.open) {
      if ((cron.runs.get(id) || []).some((run) => run.status === 'running')) return true;
    }
    return false;
  }

  async function loadCron() {
    if (!state.authed) return;
    const seq = ++cron.seq;
    const note = $('cron-note');
    try {
      const data = await api('GET', '/api/cron');
      if (seq !== cron.seq) return;
      const jobs = Array.isArray(data) ? data : [];
      const ids = new Set(jobs.map((job) => job.id));
      for (const id of [...cron.open]) {
        if (!ids.has(id)) forgetCronJob(id);
      }
      const answers = await Promise.all([...cron.open].map((id) => api('GET', `${cronPath(id)}/runs?limit=${CRON_RUNS}`)
        .then((runs) => ({ id, runs }), (error) => ({ id, error }))));
      if (seq !== cron.seq || !state.authed) return;
      for (const answer of answers) {
        if (!answer.error) {
          cron.runs.set(answer.id, Array.isArray(answer.runs) ? answer.runs : []);
          cron.runErrors.delete(answer.id);
        } else if (answer.error.status !== 404) {
          cron.runErrors.set(answer.id, answer.error.message);
        }
      }
      cron.jobs = jobs;
      cron.unsupported = false;
      $('cron-add-btn').disabled = false;
      noteRunsEnded(jobs);
      setText(note, '');
      note.className = 'cron-note';
      $('cron-updated').textContent = `Updated ${new Date().toLocaleTimeString()} · every ${CRON_POLL_MS / 1000} s`;
    } catch (error) {
      if (seq !== cron.seq || error.status === 401) return;
      note.className = 'cron-note bad';
      if (error.status === 501) {
        cron.unsupported = true;
        cron.jobs = [];
        $('cron-add-btn').disabled = true;
        setText(note, 'This agent does not run scheduled jobs.');
      } else {
        // Keep what was shown: a gateway that hiccups should not empty the page.
        setText(note, `Could not load the schedules: ${error.message}`);
      }
    }
    renderCron();
  }

  function forgetCronJob(id) {
    cron.open.delete(id);
    cron.runs.delete(id);
    cron.runErrors.delete(id);
    cron.waiting.delete(id);
    if (cron.confirming === id) cron.confirming = null;
  }

  /** Say when a run asked for with "Run now" has ended. */
  function noteRunsEnded(jobs) {
    for (const [id, wait] of cron.waiting) {
      const job = jobs.find((j) => j.id === id);
      if (!job || Date.now() - wait.asked > 120e3) {
        cron.waiting.delete(id);
        continue;
      }
      if (job.last_status && job.last_status !== 'running' && job.last_run_ms >= wait.occurrence) {
        cron.waiting.delete(id);
        announce(`The run of “${jobName(job)}” ended: ${RUN_WORDS[job.last_status] || job.last_status}.`);
      }
    }
  }

  async function loadRuns(id) {
    try {
      const runs = await api('GET', `${cronPath(id)}/runs?limit=${CRON_RUNS}`);
      cron.runs.set(id, Array.isArray(runs) ? runs : []);
      cron.runErrors.delete(id);
    } catch (error) {
      if (error.status === 401) return;
      cron.runErrors.set(id, error.message);
    }
    renderCron();
  }

  /** The focused control of the list, as {id, role}, to find it again after a render. */
  function focusedCronControl() {
    const active = document.activeElement;
    if (!active || !$('cron-list').contains(active) || !active.dataset.role) return null;
    const item = active.closest('.cron-item');
    return item ? { id: item.dataset.id, role: active.dataset.role } : null;
  }

  function cronControl(id, role) {
    for (const item of $('cron-list').querySelectorAll('.cron-item')) {
      if (item.dataset.id === id) return item.querySelector(`[data-role="${role}"]`);
    }
    return null;
  }

  function renderCron() {
    const list = $('cron-list');
    const note = $('cron-note').textContent;
    const count = cron.jobs.length;
    const paused = cron.jobs.filter((job) => !job.enabled).length;
    setText($('cron-count'), cron.unsupported ? ''
      : `${count} ${count === 1 ? 'schedule' : 'schedules'}${paused ? ` · ${paused} paused` : ''}`);
    const shown = JSON.stringify([cron.jobs, [...cron.open], [...cron.runs], [...cron.runErrors], [...cron.busy],
      [...cron.waiting.keys()], cron.confirming, note]);
    const pending = cron.focusConfirm || cron.focusAfter;
    if (shown === cron.shown && !pending) {
      refreshCronTimes();
      return;
    }
    cron.shown = shown;
    const focused = focusedCronControl();
    list.replaceChildren(...cron.jobs.map(cronItem));
    if (!count && !note) {
      list.append(el('li', { class: 'cron-empty', text: 'No schedules yet. Create one above and the assistant runs it by itself.' }));
    }
    if (focused) {
      const again = cronControl(focused.id, focused.role) || cronControl(focused.id, 'delete');
      if (again) again.focus();
    }
    if (cron.focusConfirm) {
      cron.focusConfirm = false;
      const button = list.querySelector('[data-role="confirm-delete"]');
      if (button) button.focus();
    }
    if (cron.focusAfter) {
      const target = cron.focusAfter === 'form' ? $('cron-message') : cronControl(cron.focusAfter.id, cron.focusAfter.role);
      cron.focusAfter = null;
      if (target) target.focus();
    }
  }

  /** Age the relative times in place (no re-render: a selection survives). */
  function refreshCronTimes() {
    for (const node of $('cron-list').querySelectorAll('[data-until]')) node.textContent = formatUntil(Number(node.dataset.until));
    for (const node of $('cron-list').querySelectorAll('[data-since]')) node.textContent = formatRelative(Number(node.dataset.since));
  }

  function cronItem(job) {
    const name = jobName(job);
    const [tone, word] = jobState(job);
    const open = cron.open.has(job.id);
    const runsId = `cron-runs-${domId(job.id)}`;
    const item = el('li', {
      class: `cron-item${job.enabled ? '' : ' paused'}`,
      'data-id': job.id,
      'data-enabled': String(Boolean(job.enabled)),
    });
    item.append(el('div', { class: 'cron-item-head' },
      el('h3', { class: 'cron-name', text: name }),
      el('span', { class: `badge ${tone} cron-state`, text: word })));
    item.append(el('p', { class: 'cron-schedule', text: scheduleWords(job.schedule) }));
    if (job.message && job.message !== name) item.append(el('p', { class: 'cron-message-value', text: job.message }));

    const facts = el('dl', { class: 'cron-facts' });
    const fact = (role, label, ...value) => facts.append(el('div', { class: 'cron-fact', 'data-fact': role },
      el('dt', { text: label }), el('dd', {}, ...value)));
    if (!job.enabled) fact('next', 'Next run', 'none while paused');
    else if (Number.isFinite(job.next_run_ms)) {
      fact('next', 'Next run',
        el('time', { datetime: isoOf(job.next_run_ms), text: formatWhen(job.next_run_ms) }),
        ' · ',
        el('span', { 'data-until': job.next_run_ms, text: formatUntil(job.next_run_ms) }));
    } else fact('next', 'Next run', 'none');
    if (job.last_status) {
      fact('last', 'Last run',
        el('span', { class: `cron-outcome ${RUN_TONES[job.last_status] || 'unknown'}`, text: RUN_WORDS[job.last_status] || job.last_status }),
        Number.isFinite(job.last_run_ms) ? ' · ' : null,
        Number.isFinite(job.last_run_ms)
          ? el('time', { datetime: isoOf(job.last_run_ms), title: formatWhen(job.last_run_ms), 'data-since': job.last_run_ms, text: formatRelative(job.last_run_ms) })
          : null,
        job.consecutive_failures > 0
          ? ` · ${job.consecutive_failures} ${job.consecutive_failures === 1 ? 'failure' : 'failures'} in a row` : null);
    } else fact('last', 'Last run', 'not yet');
    fact('session', 'Runs in', sessionWords(job.session));
    fact('deliver', 'Delivers to', deliveryWords(job.deliver, job.session));
    if (job.missed === 'skip') fact('missed', 'Missed runs', 'skipped');
    if (job.origin) fact('origin', 'Set up in', job.origin);
    item.append(facts);

    const busy = cron.busy.has(job.id);
    const actions = el('div', { class: 'cron-actions' },
      el('button', {
        type: 'button', class: 'btn sm', 'data-role': 'run', 'aria-label': `Run now: ${name}`,
        'aria-disabled': busy ? 'true' : null, onclick: () => runCronNow(job.id),
      }, 'Run now'),
      el('button', {
        type: 'button', class: 'btn sm', 'data-role': 'toggle', 'aria-label': `${job.enabled ? 'Pause' : 'Resume'}: ${name}`,
        'aria-disabled': busy ? 'true' : null, onclick: () => setCronEnabled(job.id, !job.enabled),
      }, job.enabled ? 'Pause' : 'Resume'),
      el('button', {
        type: 'button', class: 'btn ghost sm cron-runs-toggle', 'data-role': 'runs', 'aria-label': `Runs: ${name}`,
        'aria-expanded': String(open), 'aria-controls': runsId, onclick: () => toggleRuns(job.id),
      }, icon('chevron', 'cron-chevron'), el('span', { text: 'Runs' })),
      el('button', {
        type: 'button', class: 'icon-btn sm danger-hover cron-delete', 'data-role': 'delete', 'aria-label': `Delete: ${name}`,
        title: 'Delete', onclick: () => { cron.confirming = job.id; cron.focusConfirm = true; renderCron(); },
      }, icon('trash')));
    item.append(actions);

    if (cron.confirming === job.id) {
      const cancel = () => {
        cron.confirming = null;
        cron.focusAfter = { id: job.id, role: 'delete' };
        renderCron();
      };
      const preview = name.length > 60 ? `${name.slice(0, 59)}…` : name;
      const row = el('div', { class: 'cron-confirm', role: 'group', 'aria-label': 'Confirm deletion' },
        el('span', { class: 'confirm-text', text: `Delete “${preview}” and its runs?` }),
        el('button', { type: 'button', class: 'btn danger sm', 'data-role': 'confirm-delete', text: 'Delete', onclick: () => deleteCron(job.id) }),
        el('button', { type: 'button', class: 'btn ghost sm', 'data-role': 'cancel-delete', text: 'Cancel', onclick: cancel }));
      row.addEventListener('keydown', (e) => { if (e.key === 'Escape') cancel(); });
      item.append(row);
    }

    const panel = el('div', { class: 'cron-runs', id: runsId, role: 'region', 'aria-label': `Runs of ${name}`, hidden: !open });
    if (open) {
      const runs = cron.runs.get(job.id);
      const error = cron.runErrors.get(job.id);
      if (error) panel.append(el('p', { class: 'cron-runs-note bad', text: `Could not load the runs: ${error}` }));
      if (runs && runs.length) panel.append(el('ol', { class: 'cron-run-list' }, ...runs.map(runItem)));
      else if (runs) panel.append(el('p', { class: 'cron-runs-note', text: cron.waiting.has(job.id) ? 'Starting the run…' : 'No runs yet.' }));
      else if (!error) panel.append(el('p', { class: 'cron-runs-note', text: 'Loading the runs…' }));
    }
    item.append(panel);
    return item;
  }

  function runItem(run) {
    const status = run.status || 'unknown';
    const started = Number.isFinite(run.started_at_ms) ? run.started_at_ms : run.occurrence_ms;
    const seconds = Number.isFinite(run.ended_at_ms) && Number.isFinite(run.started_at_ms)
      ? Math.max(0, (run.ended_at_ms - run.started_at_ms) / 1000) : null;
    const tokens = (run.prompt_tokens || 0) + (run.completion_tokens || 0);
    const failedDelivery = typeof run.delivery === 'string' && run.delivery.startsWith('failed');
    const item = el('li', { class: `cron-run ${status}`, 'data-status': status, 'data-trigger': run.trigger || '' },
      el('div', { class: 'cron-run-head' },
        el('time', { datetime: isoOf(started), text: formatWhen(started) }),
        el('span', { class: `badge ${RUN_TONES[status] || 'unknown'}`, text: RUN_WORDS[status] || status }),
        el('span', { class: 'cron-run-trigger', text: TRIGGER_WORDS[run.trigger] || run.trigger || '' }),
        run.attempt > 1 ? el('span', { text: `attempt ${run.attempt}` }) : null,
        seconds !== null ? el('span', { text: seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s` }) : null,
        tokens ? el('span', { text: `${tokens} tokens` }) : null,
        run.delivery ? el('span', { class: `cron-run-delivery${failedDelivery ? ' bad' : ''}`, text: `delivery ${run.delivery}` }) : null));
    if (run.error) item.append(el('p', { class: 'cron-run-text cron-run-error', text: clipText(run.error) }));
    if (run.reply) item.append(el('p', { class: 'cron-run-text cron-run-reply', text: clipText(run.reply) }));
    else if (status === 'running') item.append(el('p', { class: 'cron-run-text muted', text: 'Running…' }));
    return item;
  }

  function toggleRuns(id) {
    if (cron.open.has(id)) cron.open.delete(id);
    else {
      cron.open.add(id);
      loadRuns(id);
    }
    renderCron();
  }

  async function runCronNow(id) {
    if (cron.busy.has(id)) return;
    const job = cron.jobs.find((j) => j.id === id);
    cron.busy.add(id);
    renderCron();
    try {
      const answer = await api('POST', `${cronPath(id)}/run`);
      const occurrence = answer && Number.isFinite(answer.occurrence_ms) ? answer.occurrence_ms : 0;
      cron.waiting.set(id, { occurrence, asked: Date.now() });
      cron.open.add(id);
      announce(`“${job ? jobName(job) : id}” runs in a moment.`);
    } catch (error) {
      if (error.status === 401) return;
      toast(error.status === 404 ? 'That schedule is gone.' : `Could not run it: ${error.message}`);
    } finally {
      cron.busy.delete(id);
    }
    renderCron();
    refreshCron(); // now, then every 1.5 s until the run has ended
  }

  async function setCronEnabled(id, enabled) {
    if (cron.busy.has(id)) return;
    cron.busy.add(id);
    renderCron();
    try {
      const job = await api('PATCH', cronPath(id), { enabled });
      if (job && job.id) cron.jobs = cron.jobs.map((j) => (j.id === id ? job : j));
      announce(`${enabled ? 'Resumed' : 'Paused'} “${job ? jobName(job) : id}”.`);
    } catch (error) {
      if (error.status === 401) return;
      toast(error.status === 404 ? 'That schedule is gone.' : `Could not ${enabled ? 'resume' : 'pause'} it: ${error.message}`);
    } finally {
      cron.busy.delete(id);
    }
    renderCron();
    refreshCron();
  }

  async function deleteCron(id) {
    cron.confirming = null;
    const index = cron.jobs.findIndex((j) => j.id === id);
    try {
      await api('DELETE', cronPath(id));
      announce('Schedule deleted.');
    } catch (error) {
      if (error.status === 401) return;
      if (error.status !== 404) {
        toast(`Could not delete it: ${error.message}`);
        cron.focusAfter = { id, role: 'delete' };
        renderCron();
        return;
      }
    }
    forgetCronJob(id);
    cron.jobs = cron.jobs.filter((j) => j.id !== id);
    const next = cron.jobs[Math.min(Math.max(index, 0), cron.jobs.length - 1)];
    cron.focusAfter = next ? { id: next.id, role: 'delete' } : 'form';
    renderCron();
    refreshCron();
  }

  /** A local "2026-12-24 09:00" means the browser's zone: send it as an instant. */
  function atForServer(text) {
    const m = LOCAL_TIME_RE.exec(text);
    if (!m) return { at: text };
    const ms = new Date(`${m[1]}T${m[2]}`).getTime();
    if (!Number.isFinite(ms)) return { at: text };
    return { at: new Date(ms).toISOString().replace(/\.000Z$/, 'Z'), ms };
  }

  /** The form field a server's complaint is about, to mark and focus. */
  function cronFieldFor(message, kind) {
    if (/cron expression|never matches/i.test(message)) return 'cron-expr';
    if (/time zone/i.test(message)) return 'cron-tz';
    if (/message/i.test(message)) return 'cron-message';
    if (/\bname\b/i.test(message)) return 'cron-name';
    if (/session/i.test(message)) return 'cron-session';
    if (/duration|interval|not a time|in the past|ten years/i.test(message)) return kind === 'every' ? 'cron-every' : 'cron-at';
    return null;
  }

  async function addCron(event) {
    event.preventDefault();
    const error = $('cron-add-error');
    error.textContent = '';
    for (const field of $('cron-add').querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
    const fail = (text, id) => {
      error.textContent = text;
      const field = id && $(id);
      if (field) {
        field.setAttribute('aria-invalid', 'true');
        field.focus();
      }
    };
    const kind = $('cron-kind').value;
    let schedule;
    if (kind === 'at') {
      const text = $('cron-at').value.trim();
      if (!text) return fail('Say when it runs: “in 10m”, or a date and time.', 'cron-at');
      const at = atForServer(text);
      if (at.ms !== undefined && at.ms < Date.now()) return fail(`${text} has already passed.`, 'cron-at');
      schedule = { kind: 'at', at: at.at };
    } else if (kind === 'every') {
      const every = $('cron-every').value.trim();
      if (!every) return fail('Say how often it runs, such as 10m, 1h or 1d.', 'cron-every');
      schedule = { kind: 'every', every };
    } else {
      const expr = $('cron-expr').value.trim();
      if (!expr) return fail('Write the cron expression, such as 0 8 * * 1-5.', 'cron-expr');
      schedule = { kind: 'cron', expr };
      const tz = $('cron-tz').value.trim();
      if (tz) schedule.tz = tz;
    }
    const message = $('cron-message').value.trim();
    if (!message) return fail('Write the message the assistant gets on each run.', 'cron-message');
    const body = { schedule, message };
    const name = $('cron-name').value.trim();
    if (name) body.name = name;
    const session = $('cron-session').value;
    if (session) body.session = { kind: 'named', key: session };
    if ($('cron-skip').checked) body.missed = 'skip';

    const button = $('cron-add-btn');
    button.disabled = true;
    try {
      const job = await api('POST', '/api/cron', body);
      for (const id of ['cron-message', 'cron-name', 'cron-at', 'cron-at-pick', 'cron-every', 'cron-expr']) $(id).value = '';
      if (job && job.id && !cron.jobs.some((j) => j.id === job.id)) cron.jobs = [...cron.jobs, job];
      const next = job && job.enabled && Number.isFinite(job.next_run_ms) ? `; it runs next ${formatUntil(job.next_run_ms)}` : '';
      announce(`Schedule “${job ? jobName(job) : message}” created${next}.`);
      renderCron();
      refreshCron();
    } catch (failure) {
      if (failure.status === 401) return;
      if (failure.status === 501) fail('This agent does not run scheduled jobs.');
      else fail(`Not created: ${failure.message}`, failure.status === 400 ? cronFieldFor(failure.message, kind) : null);
    } finally {
      button.disabled = cron.unsupported;
    }
  }

  function syncCronKind() {
    const kind = $('cron-kind').value;
    for (const box of $('cron-add').querySelectorAll('.cron-when')) box.hidden = box.dataset.kind !== kind;
  }

  /** The chats a job can run in: a fresh session, or one of the listed chats. */
  function refreshSessionChoices() {
    const select = $('cron-session');
    const chosen = select.value;
    const chats = state.sessions
      .filter((s) => !s.local && !s.key.startsWith('cron:'))
      .sort((a, b) => (b.key === state.current) - (a.key === state.current));
    const options = [el('option', { value: '', text: 'A fresh session each run' })];
    for (const s of chats) {
      options.push(el('option', { value: s.key, text: `${s.key === state.current ? 'This chat' : 'Chat'}: ${sessionLabel(s)}` }));
    }
    if (chosen && !chats.some((s) => s.key === chosen)) options.push(el('option', { value: chosen, text: chosen }));
    select.replaceChildren(...options);
    select.value = chosen;
  }

  function bindCron() {
    $('cron-add').addEventListener('submit', addCron);
    $('cron-kind').addEventListener('change', () => {
      syncCronKind();
      $('cron-add-error').textContent = '';
    });
    $('cron-at-pick').addEventListener('change', () => {
      const value = $('cron-at-pick').value;
      if (value) {
        $('cron-at').value = value.replace('T', ' ');
        $('cron-at').removeAttribute('aria-invalid');
      }
    });
    $('cron-add').addEventListener('input', (e) => {
      if (e.target && e.target.removeAttribute) e.target.removeAttribute('aria-invalid');
    });
    // Ctrl/⌘+Enter in the message creates the schedule, like a form's Enter.
    $('cron-message').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        $('cron-add').requestSubmit();
      }
    });
    $('cron-session').addEventListener('focus', refreshSessionChoices);
    $('cron-tz').value = browserZone();
    syncCronKind();
  }

  // ----------------------------------------------------------------- wiring

  function bind() {
    $('login-form').addEventListener('submit', onLogin);
    $('logout-btn').addEventListener('click', logout);
    $('new-chat').addEventListener('click', () => newChat(true));
    $('menu-btn').addEventListener('click', () => {
      if (document.body.classList.contains('drawer-open')) closeDrawer(true);
      else openDrawer();
    });
    $('backdrop').addEventListener('click', () => closeDrawer(true));
    $('status-refresh').addEventListener('click', () => loadStatus());
    bindMemory();
    bindCron();
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && document.body.classList.contains('drawer-open')) closeDrawer(true);
    });
    const onPhoneChange = () => {
      if (!PHONE.matches) document.body.classList.remove('drawer-open');
      syncDrawer();
    };
    if (PHONE.addEventListener) PHONE.addEventListener('change', onPhoneChange);
    syncDrawer();

    // Keep the newest message in view while the list resizes (rotation,
    // keyboard, window), unless the reader scrolled up.
    const box = $('messages');
    box.addEventListener('scroll', () => { state.stick = isNearBottom(); }, { passive: true });
    if (window.ResizeObserver) {
      new ResizeObserver(() => { if (state.stick) box.scrollTop = box.scrollHeight; }).observe(box);
    }

    const input = $('input');
    input.addEventListener('input', autoGrow);
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        if (!activeTurn(state.current)) send();
      }
    });
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      send();
    });
    $('stop-btn').addEventListener('click', () => {
      cancelTurn(activeTurn(state.current));
      $('input').focus();
    });

    window.addEventListener('hashchange', () => { if (state.authed) route(); });
    window.addEventListener('online', reconnectNow);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible' || !state.authed) {
        stopChatPolling();
        return;
      }
      reconnectNow();
      if (state.view === 'status') loadStatus();
      if (state.view === 'schedules') startCronPolling();
      if (state.view === 'chat') startChatPolling(true);
    });
    // Relative times in the list age; refresh them now and then.
    setInterval(() => { if (state.authed && !state.editing && !state.confirming) renderSessions(); }, 60000);
  }

  async function boot() {
    bind();
    let response;
    try {
      response = await fetch('/api/me', { credentials: 'same-origin' });
    } catch {
      showLogin('Cannot reach the gateway. Is it running?');
      return;
    }
    if (response.ok) enterApp();
    else if (response.status === 429) showLogin('Too many failed attempts from this address. Wait a minute, then try again.');
    else showLogin();
  }

  // Exposed for tests of the renderer only; it holds no state.
  window.OCG = Object.freeze({ renderMarkdown: (src) => Markdown.render(src) });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();

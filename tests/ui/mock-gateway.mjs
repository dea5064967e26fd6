// A stand-in for the OCG gateway, following docs/gateway.md: the UI's static
// files (with the real CSP), login/logout/me, sessions, memory, schedules
// (/api/cron), status, channels, pairing requests (/api/pairing, one pending)
// and the chat WebSocket. The agent behind it echoes `echo: <text>`, like the
// fake LLM of the real stack; a message containing "tool" also runs a fake
// tool, one containing "fail" ends in an error, one containing "slow" streams slowly.
//
//   node tests/ui/mock-gateway.mjs [--port N] [--token T] [--no-cron]
//
// Prints `mock gateway listening on http://127.0.0.1:N` once ready.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireDep } from './deps.mjs';

const { WebSocketServer } = requireDep('ws');

const here = path.dirname(fileURLToPath(import.meta.url));
const ASSETS = path.resolve(here, '../../ocg-gateway-lib/assets');
const CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 ? process.argv[i + 1] : fallback;
}

const TOKEN = arg('token', process.env.OCG_UI_TOKEN || 'mock-token');
const PORT = Number(arg('port', process.env.OCG_PORT || '0'));
const COOKIE_VALUE = crypto.createHmac('sha256', TOKEN).update('ocg-session').digest('hex');
const started = Date.now();

/** key -> {key, title, created_at_ms, updated_at_ms, turns, messages: []} */
const sessions = new Map();
let messageIds = 0;

/** Store a turn's messages in `s`, as the agent does when the turn ends. */
function storeTurn(s, messages, now) {
  s.turns = (s.turns || 0) + 1;
  s.updated_at_ms = now;
  for (const m of messages) {
    s.messages.push({ id: ++messageIds, turn: s.turns, tokens: 10, archived: false, ...m, created_at_ms: now });
  }
}
/** The user's memories, oldest first (docs/gateway.md, "Memory"). */
const memories = [];
let memoryIds = 0;
let memoryClock = 0;
const failures = new Map(); // ip -> [times]
/** Pairing requests waiting for the owner (docs/channels.md), oldest first: one stranger on Telegram. */
const pairingRequests = [{
  code: 'ABCD2345',
  channel: 'telegram',
  entry: '4242',
  sender: '@eve (4242)',
  chat: { chat_id: '4242' },
  created_at_ms: started - 2 * 60e3,
  expires_at_ms: started + 3600e3,
}];
const RUNNING_CHANNELS = ['telegram'];

function report(service, checks) {
  return {
    service,
    status: checks.every((c) => c.status === 'ok') ? 'ok' : 'degraded',
    version: '0.1.0-mock',
    pid: process.pid,
    uptime_secs: Math.floor((Date.now() - started) / 1000),
    checks,
  };
}

function gatewayHealth() {
  return report('gateway', [{ name: 'agent', status: 'ok', detail: 'version 0.1.0-mock' }]);
}

function agentHealth() {
  return report('agent', [
    { name: 'llm', status: 'ok', detail: 'openai fake-model' },
    { name: 'sessions', status: 'ok', detail: `${sessions.size} sessions` },
    { name: 'embedding', status: 'ok', detail: 'all-MiniLM-L6-v2 (384 dims) at 127.0.0.1:0' },
  ]);
}

function send(res, status, body, headers = {}) {
  const data = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(data);
}

const unauthorized = (res) => send(res, 401, { error: { code: 'unauthorized', message: 'sign in first' } });
const notFound = (res, what = 'no such route') => send(res, 404, { error: { code: 'not_found', message: what } });

function cookies(req) {
  const out = {};
  for (const part of (req.headers.cookie || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function safeEqual(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function authed(req) {
  if (safeEqual(cookies(req).ocg_session || '', COOKIE_VALUE)) return true;
  const bearer = /^Bearer (.+)$/.exec(req.headers.authorization || '');
  if (bearer && safeEqual(bearer[1], TOKEN)) return true;
  return safeEqual(req.headers['x-ocg-ui-token'] || '', TOKEN);
}

function tooManyFailures(ip) {
  const now = Date.now();
  const recent = (failures.get(ip) || []).filter((t) => now - t < 60000);
  failures.set(ip, recent);
  return recent.length >= 10;
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1 << 20) throw Object.assign(new Error('too large'), { status: 413 });
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
  } catch {
    throw Object.assign(new Error('invalid JSON'), { status: 400 });
  }
}

function serveAsset(res, file, type) {
  let body;
  try {
    body = fs.readFileSync(path.join(ASSETS, file));
  } catch {
    return notFound(res, `${file} missing`);
  }
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-cache',
  });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const p = url.pathname;
  const ip = req.socket.remoteAddress;
  try {
    if (req.method === 'GET' && p === '/') return serveAsset(res, 'index.html', 'text/html; charset=utf-8');
    if (req.method === 'GET' && p === '/assets/app.js') return serveAsset(res, 'app.js', 'text/javascript; charset=utf-8');
    if (req.method === 'GET' && p === '/assets/style.css') return serveAsset(res, 'style.css', 'text/css; charset=utf-8');
    if (req.method === 'GET' && p === '/health') return send(res, 200, gatewayHealth());
    if (req.method === 'POST' && p === '/login') {
      if (tooManyFailures(ip)) return send(res, 429, { error: { code: 'rate_limited', message: 'too many attempts' } });
      const body = await readJson(req);
      if (body && typeof body.token === 'string' && safeEqual(body.token, TOKEN)) {
        return send(res, 204, undefined, {
          'Set-Cookie': `ocg_session=${COOKIE_VALUE}; HttpOnly; SameSite=Strict; Path=/`,
        });
      }
      failures.get(ip).push(Date.now());
      return unauthorized(res);
    }
    if (req.method === 'POST' && p === '/logout') {
      return send(res, 204, undefined, { 'Set-Cookie': 'ocg_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0' });
    }
    if (!authed(req)) {
      if (tooManyFailures(ip)) return send(res, 429, { error: { code: 'rate_limited', message: 'too many attempts' } });
      return unauthorized(res);
    }
    if (req.method === 'GET' && p === '/api/me') return send(res, 200, { ok: true });
    if (req.method === 'GET' && p === '/api/status') return send(res, 200, { gateway: gatewayHealth(), agent: agentHealth() });
    if (req.method === 'GET' && p === '/api/channels') {
      return send(res, 200, [{ name: 'telegram', state: 'connected', mode: 'long_polling', last_message_at_ms: Date.now(), received: 3, sent: 3, pending: 0, errors: 1, last_error: 'getUpdates: Telegram answered 502: Bad Gateway', last_error_at_ms: Date.now() }]);
    }
    if (req.method === 'GET' && p === '/api/mcp') {
      return send(res, 200, [{ name: 'files', transport: 'stdio', state: 'running', detail: 'secure-filesystem-server 0.2.0', tools: ['files__read_file', 'files__list_directory'], restarts: 0 }]);
    }
    if (p === '/api/pairing' || p.startsWith('/api/pairing/')) return pairingRoute(req, res, p);
    if (req.method === 'GET' && p === '/api/sessions') {
      const list = [...sessions.values()]
        .sort((a, b) => b.updated_at_ms - a.updated_at_ms || a.key.localeCompare(b.key))
        .map((s) => ({
          key: s.key,
          ...(s.title ? { title: s.title } : {}),
          created_at_ms: s.created_at_ms,
          updated_at_ms: s.updated_at_ms,
          messages: s.messages.length,
          archived: 0,
        }));
      return send(res, 200, list);
    }
    if (p === '/api/memory' || p.startsWith('/api/memory/')) return memoryRoute(req, res, url);
    if (p === '/api/cron' || p.startsWith('/api/cron/')) return cronRoute(req, res, url);
    const m = /^\/api\/sessions\/([^/]+)(\/history|\/rename)?$/.exec(p);
    if (m) {
      const key = decodeURIComponent(m[1]);
      const s = sessions.get(key);
      if (!s) return notFound(res, `no session ${key}`);
      if (req.method === 'GET' && m[2] === '/history') {
        const offset = Number(url.searchParams.get('offset') || 0);
        const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get('limit') || 100)));
        return send(res, 200, s.messages.slice(offset, offset + limit));
      }
      if (req.method === 'POST' && m[2] === '/rename') {
        const body = await readJson(req);
        if (!body || typeof body.title !== 'string') return send(res, 400, { error: { code: 'invalid_input', message: 'title is required' } });
        s.title = body.title;
        return send(res, 204);
      }
      if (req.method === 'DELETE' && !m[2]) {
        sessions.delete(key);
        return send(res, 204);
      }
    }
    return notFound(res);
  } catch (error) {
    return send(res, error.status || 500, { error: { code: 'invalid_input', message: error.message } });
  }
});

// --------------------------------------------------------------- pairing

/** A code as the gateway reads it: case and dashes ignored, O as 0, I and L as 1. */
const normalCode = (code) => code.toUpperCase().replace(/-/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');

/** GET /api/pairing, POST /api/pairing/{code}/approve and /deny (ocg-gateway-lib/src/channels.rs). */
function pairingRoute(req, res, p) {
  const now = Date.now();
  for (let i = pairingRequests.length - 1; i >= 0; i--) {
    if (pairingRequests[i].expires_at_ms <= now) pairingRequests.splice(i, 1);
  }
  if (req.method === 'GET' && p === '/api/pairing') return send(res, 200, pairingRequests);
  const m = /^\/api\/pairing\/([^/]+)\/(approve|deny)$/.exec(p);
  if (!m || req.method !== 'POST') return notFound(res);
  const code = normalCode(decodeURIComponent(m[1]));
  const index = pairingRequests.findIndex((r) => r.code === code);
  if (index === -1) return notFound(res, 'no pending pairing request has this code (it may have expired)');
  const request = pairingRequests[index];
  if (m[2] === 'approve' && !RUNNING_CHANNELS.includes(request.channel)) {
    return send(res, 503, { error: { code: 'unavailable', message: `${request.channel} unavailable: the channel is not running in this gateway` } });
  }
  pairingRequests.splice(index, 1);
  return send(res, 200, request);
}

// ---------------------------------------------------------------- memory

const bad = (res, code, message) => send(res, 400, { error: { code, message } });
const words = (text) => text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);

function intParam(url, name, fallback, max) {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  return Number.isInteger(n) && n >= (name === 'offset' ? 0 : 1) && n <= max ? n : null;
}

/** The memory routes, with the gateway's checks and a naive word search. */
async function memoryRoute(req, res, url) {
  const p = url.pathname;
  if (req.method === 'GET' && p === '/api/memory') {
    const offset = intParam(url, 'offset', 0, Number.MAX_SAFE_INTEGER);
    const limit = intParam(url, 'limit', 50, 500);
    if (offset === null) return bad(res, 'invalid_offset', 'offset must be a whole number');
    if (limit === null) return bad(res, 'invalid_limit', 'limit must be from 1 to 500');
    const newest = [...memories].reverse();
    return send(res, 200, { memories: newest.slice(offset, offset + limit), total: memories.length });
  }
  if (req.method === 'GET' && p === '/api/memory/search') {
    const q = (url.searchParams.get('q') || '').trim();
    if (!q) return bad(res, 'empty_query', 'q is required');
    const limit = intParam(url, 'limit', 10, 100);
    if (limit === null) return bad(res, 'invalid_limit', 'limit must be from 1 to 100');
    const wanted = words(q);
    const found = [...memories].reverse()
      .map((m) => {
        const have = new Set(words(m.text));
        const shared = wanted.filter((w) => have.has(w)).length;
        return { ...m, score: wanted.length ? shared / wanted.length : 0 };
      })
      .filter((m) => m.score > 0)
      .sort((a, b) => b.score - a.score)
      .slice(0, limit);
    return send(res, 200, { memories: found });
  }
  if (req.method === 'POST' && p === '/api/memory') {
    const body = await readJson(req);
    if (!body || typeof body.text !== 'string') return bad(res, 'invalid_json', 'text is required');
    const text = body.text.trim();
    if (!text) return bad(res, 'empty_text', 'the memory is empty');
    if ([...text].length > 4000) return bad(res, 'text_too_long', 'at most 4000 characters');
    if (body.importance !== undefined && !(typeof body.importance === 'number' && body.importance >= 0 && body.importance <= 1)) {
      return bad(res, 'invalid_importance', 'importance is from 0 to 1');
    }
    const category = typeof body.category === 'string' && body.category.trim() ? body.category.trim() : null;
    const now = Math.max(Date.now(), memoryClock + 1);
    memoryClock = now;
    const same = memories.findIndex((m) => m.text.toLowerCase() === text.toLowerCase());
    if (same !== -1) {
      const [existing] = memories.splice(same, 1);
      Object.assign(existing, { text, updated_at_ms: now });
      if (category) existing.category = category;
      if (body.importance !== undefined) existing.importance = body.importance;
      memories.push(existing);
      return send(res, 200, { memory: existing, updated: true });
    }
    const memory = {
      id: `mem-${++memoryIds}`,
      text,
      category: category || 'fact',
      importance: body.importance ?? 0.5,
      source: 'user',
      created_at_ms: now,
      updated_at_ms: now,
    };
    memories.push(memory);
    return send(res, 201, { memory, updated: false });
  }
  const m = /^\/api\/memory\/([^/]+)$/.exec(p);
  if (m) {
    const id = decodeURIComponent(m[1]);
    const index = memories.findIndex((x) => x.id === id);
    if (index === -1) return notFound(res, `no memory ${id}`);
    if (req.method === 'GET') return send(res, 200, memories[index]);
    if (req.method === 'DELETE') {
      memories.splice(index, 1);
      return send(res, 204);
    }
  }
  return notFound(res);
}

// ------------------------------------------------------------- schedules

// Jobs and runs in memory, with the agent's checks and messages
// (ocg-agent-lib/src/schedule): a job's next run is computed like the
// agent's for `at` and `every`, and approximated (the next whole minute) for
// cron. A tick each 250 ms starts due runs and runs asked for with "run now";
// a run answers `echo: <prompt>` (the agent's prompt: the message, then a
// `[Scheduled job “name”, due <time>.]` line) after a short while, or fails when the
// message contains "fail"; a run in a named session the mock knows is stored
// there as a turn. `--no-cron` makes every route answer 501, like an agent
// without scheduling.
const NO_CRON = process.argv.includes('--no-cron');
const MAX_JOB_MESSAGE = 8000;
/** id -> Job (plus the private fields anchor_ms and run_requested_ms). */
const jobs = new Map();
/** All runs, oldest first. */
const jobRuns = [];
let runIds = 0;

const invalid = (message) => Object.assign(new Error(message), { status: 400, code: 'invalid_input' });

function durationMs(text) {
  const bad = () => invalid(`${JSON.stringify(text)} is not a duration: use a number and a unit, such as 30s, 10m, 1h30m, 2d`);
  const units = { s: 1e3, sec: 1e3, secs: 1e3, second: 1e3, seconds: 1e3, m: 60e3, min: 60e3, mins: 60e3, minute: 60e3, minutes: 60e3,
    h: 3600e3, hr: 3600e3, hrs: 3600e3, hour: 3600e3, hours: 3600e3, d: 86400e3, day: 86400e3, days: 86400e3,
    w: 7 * 86400e3, week: 7 * 86400e3, weeks: 7 * 86400e3 };
  let rest = String(text).trim();
  if (!rest) throw bad();
  let total = 0;
  while (rest) {
    const m = /^(\d+)\s*([a-zA-Z]+)\s*,?\s*(?:and\s+)?/.exec(rest);
    if (!m || !units[m[2].toLowerCase()]) throw bad();
    total += Number(m[1]) * units[m[2].toLowerCase()];
    rest = rest.slice(m[0].length);
  }
  if (total > 3660 * 86400e3) throw invalid(`${JSON.stringify(text)} is longer than ten years`);
  return total;
}

function atMs(text, now) {
  const t = String(text).trim();
  const relative = /^(?:in |\+)(.*)$/.exec(t);
  if (relative) return now + durationMs(relative[1]);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(t)) return Date.parse(t);
  const local = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)$/.exec(t);
  if (local) return new Date(`${local[1]}T${local[2]}`).getTime(); // the machine's zone
  throw invalid(`${JSON.stringify(t)} is not a time: use RFC 3339 (2026-12-24T09:00:00+01:00), a local 2026-12-24 09:00, or "in 10m"`);
}

function checkZone(name) {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return name;
  } catch {
    throw invalid(`${JSON.stringify(name)} is not an IANA time zone (Europe/Berlin, America/New_York, UTC)`);
  }
}

/** Check a schedule: its stored form and its first occurrence after `now`. */
function plan(schedule, now, anchor) {
  if (!schedule || typeof schedule !== 'object') throw invalid('a schedule is required');
  if (schedule.kind === 'at' && typeof schedule.at === 'string') {
    const at = atMs(schedule.at, now);
    return { stored: { kind: 'at', at: new Date(at).toISOString().replace(/\.000Z$/, 'Z') }, next: at };
  }
  if (schedule.kind === 'every' && typeof schedule.every === 'string') {
    const every = durationMs(schedule.every);
    if (every < 1000) throw invalid('an interval is at least one second');
    return { stored: { kind: 'every', every: schedule.every.trim() }, next: anchor + every * Math.max(1, Math.floor((now - anchor) / every) + 1) };
  }
  if (schedule.kind === 'cron' && typeof schedule.expr === 'string') {
    const expr = schedule.expr.trim();
    if (expr.split(/\s+/).length !== 5 && !/^@(yearly|annually|monthly|weekly|daily|hourly)$/.test(expr)) {
      throw invalid(`${JSON.stringify(schedule.expr)} is not a cron expression (minute hour day-of-month month day-of-week, such as "0 8 * * 1-5"): Pattern must have 5 fields when seconds are disallowed.`);
    }
    const tz = typeof schedule.tz === 'string' && schedule.tz.trim()
      ? checkZone(schedule.tz.trim())
      : Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    return { stored: { kind: 'cron', expr, tz }, next: Math.floor(now / 60000) * 60000 + 60000 };
  }
  throw invalid('a schedule is {"kind":"at","at"}, {"kind":"every","every"} or {"kind":"cron","expr","tz"?}');
}

function checkMessage(message) {
  const text = typeof message === 'string' ? message.trim() : '';
  if (!text || [...text].length > MAX_JOB_MESSAGE) throw invalid(`a job's message is 1 to ${MAX_JOB_MESSAGE} characters`);
  return text;
}

function checkSession(session) {
  if (session === undefined || session === null) return { kind: 'isolated' };
  if (session.kind === 'isolated') return { kind: 'isolated' };
  if (session.kind === 'named' && typeof session.key === 'string' && session.key && session.key.length <= 200
    && !/[\u0000-\u001f\u007f]/.test(session.key)) {
    return { kind: 'named', key: session.key };
  }
  throw invalid('a session key is 1 to 200 characters without control characters');
}

function checkTarget(target) {
  if (target === undefined || target === null) return undefined;
  if (target.kind === 'chat') {
    if (typeof target.channel !== 'string' || !/^[a-z0-9_-]{1,32}$/.test(target.channel) || ['web', 'api', 'cron', 'webhook'].includes(target.channel)) {
      throw invalid(`${JSON.stringify(target.channel)} is not a chat channel (telegram, …); a web or API session gets its replies by running the job in it`);
    }
    if (typeof target.chat_id !== 'string' || !target.chat_id.trim() || target.chat_id.length > 128) {
      throw invalid('a chat id is 1 to 128 characters without control characters');
    }
    return { kind: 'chat', channel: target.channel, chat_id: target.chat_id, ...(target.thread_id ? { thread_id: String(target.thread_id) } : {}) };
  }
  if (target.kind === 'webhook' && typeof target.url === 'string') {
    let url;
    try { url = new URL(target.url.trim()); } catch { throw invalid(`${JSON.stringify(target.url)} is not a URL`); }
    if (!/^https?:$/.test(url.protocol)) throw invalid(`${JSON.stringify(target.url)}: a webhook is an http or https URL with a host`);
    return { kind: 'webhook', url: target.url.trim() };
  }
  throw invalid('a delivery target is {"kind":"chat","channel","chat_id"} or {"kind":"webhook","url"}');
}

function checkMissed(missed) {
  if (missed === undefined) return 'run_once';
  if (missed === 'run_once' || missed === 'skip') return missed;
  throw invalid('missed is "run_once" or "skip"');
}

/** A job as the API shows it. */
function publicJob(job) {
  const { anchor_ms: _anchor, run_requested_ms: _requested, next_run_ms: next, ...rest } = job;
  return { ...rest, ...(job.enabled && next != null ? { next_run_ms: next } : {}) };
}

const sortedJobs = () => [...jobs.values()].sort((a, b) => {
  const x = a.enabled && a.next_run_ms != null ? a.next_run_ms : Infinity;
  const y = b.enabled && b.next_run_ms != null ? b.next_run_ms : Infinity;
  return x - y || a.created_at_ms - b.created_at_ms;
});

function createJob(body, now) {
  if (!body || typeof body !== 'object') throw invalid('a job is a JSON object');
  const message = checkMessage(body.message);
  const { stored, next } = plan(body.schedule, now, now);
  if (stored.kind === 'at' && next < now - 1000) throw invalid(`${stored.at} is in the past`);
  const session = checkSession(body.session);
  const deliver = checkTarget(body.deliver);
  const name = typeof body.name === 'string' && body.name.trim() ? body.name.trim() : [...message].slice(0, 60).join('');
  if ([...name].length > 200) throw invalid('a name is at most 200 characters');
  const job = {
    id: crypto.randomBytes(8).toString('hex'),
    name,
    schedule: stored,
    message,
    session,
    ...(deliver ? { deliver } : {}),
    enabled: body.enabled === undefined ? true : Boolean(body.enabled),
    missed: checkMissed(body.missed),
    disable_after_failures: Number.isInteger(body.disable_after_failures) && body.disable_after_failures >= 0 ? body.disable_after_failures : 5,
    consecutive_failures: 0,
    next_run_ms: next,
    created_at_ms: now,
    updated_at_ms: now,
    anchor_ms: now,
    run_requested_ms: null,
  };
  jobs.set(job.id, job);
  return job;
}

function updateJob(job, patch, now) {
  if (!patch || typeof patch !== 'object') throw invalid('a patch is a JSON object');
  const changed = { ...job };
  if (patch.name !== undefined) {
    const name = typeof patch.name === 'string' ? patch.name.trim() : '';
    if (!name || [...name].length > 200) throw invalid('a name is 1 to 200 characters');
    changed.name = name;
  }
  if (patch.message !== undefined) changed.message = checkMessage(patch.message);
  if (patch.missed !== undefined) changed.missed = checkMissed(patch.missed);
  let recompute = false;
  if (patch.schedule !== undefined) {
    changed.schedule = plan(patch.schedule, now, now).stored;
    changed.anchor_ms = now;
    recompute = true;
  }
  if (patch.enabled !== undefined) {
    const enabled = Boolean(patch.enabled);
    if (enabled && !job.enabled) {
      recompute = true;
      changed.consecutive_failures = 0;
    }
    changed.enabled = enabled;
  }
  if (recompute) {
    const { next } = plan(changed.schedule, now, changed.anchor_ms);
    changed.next_run_ms = changed.schedule.kind === 'at'
      ? (changed.last_run_ms == null ? Math.max(next, now) : (next > now ? next : null))
      : next;
  }
  changed.updated_at_ms = now;
  Object.assign(job, changed);
  return job;
}

/** A time as the agent writes it in a run's prompt: `2026-12-24 09:00 CET` (the machine's zone). */
function localTime(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  const zone = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }).formatToParts(d)
    .find((part) => part.type === 'timeZoneName');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}${zone ? ` ${zone.value}` : ''}`;
}

/** The user message of a run (ocg-agent-lib/src/schedule/scheduler.rs, run_prompt). */
function runPrompt(job, occurrence) {
  const sent = job.deliver ? ' Your reply is sent to the user as it is.' : '';
  return `${job.message}\n\n[Scheduled job \u201c${job.name}\u201d, due ${localTime(occurrence)}.${sent}]`;
}

/**
 * Start a run of `job` for `occurrence`; it ends a little later, answering
 * `echo: <prompt>`. A run in a named session the mock knows is stored there
 * like a turn from the chat (a failed one is not, as with the agent).
 */
function startRun(job, occurrence, trigger) {
  const now = Date.now();
  const prompt = runPrompt(job, occurrence);
  const run = {
    id: ++runIds,
    job_id: job.id,
    occurrence_ms: occurrence,
    attempt: 1,
    trigger,
    status: 'running',
    session_key: job.session.kind === 'named' ? job.session.key : `cron:${job.id}:${runIds}`,
    started_at_ms: now,
    prompt_tokens: 0,
    completion_tokens: 0,
    ...(job.deliver ? { delivery: 'pending' } : {}),
  };
  jobRuns.push(run);
  job.last_status = 'running';
  job.last_run_ms = now;
  setTimeout(() => {
    const failing = /fail/i.test(job.message);
    Object.assign(run, { status: failing ? 'error' : 'ok', ended_at_ms: Date.now() });
    if (failing) run.error = 'the model answered HTTP 500: upstream exploded';
    else Object.assign(run, { reply: `echo: ${prompt}`, prompt_tokens: 20, completion_tokens: 10 });
    const session = job.session.kind === 'named' ? sessions.get(job.session.key) : null;
    if (session && !failing) {
      storeTurn(session, [{ role: 'user', content: prompt }, { role: 'assistant', content: run.reply }], run.ended_at_ms);
    }
    if (job.deliver) run.delivery = failing ? undefined : 'sent';
    if (run.delivery === undefined) delete run.delivery;
    if (!jobs.has(job.id)) return;
    job.last_status = run.status;
    job.consecutive_failures = failing ? job.consecutive_failures + 1 : 0;
    if (failing && job.disable_after_failures > 0 && job.consecutive_failures >= job.disable_after_failures) job.enabled = false;
  }, 400);
}

// The scheduler: due occurrences and runs asked for.
setInterval(() => {
  const now = Date.now();
  for (const job of jobs.values()) {
    if (job.run_requested_ms != null && job.run_requested_ms <= now) {
      const at = job.run_requested_ms;
      job.run_requested_ms = null;
      startRun(job, at, 'manual');
    }
    if (job.enabled && job.next_run_ms != null && job.next_run_ms <= now) {
      const at = job.next_run_ms;
      if (job.schedule.kind === 'at') job.next_run_ms = null;
      else job.next_run_ms = plan(job.schedule, now, job.anchor_ms).next;
      startRun(job, at, 'schedule');
    }
  }
}, 250).unref();

async function cronRoute(req, res, url) {
  if (NO_CRON) return send(res, 501, { error: { code: 'unsupported', message: 'this agent runs without scheduling' } });
  const p = url.pathname;
  const now = Date.now();
  try {
    if (p === '/api/cron') {
      if (req.method === 'GET') return send(res, 200, sortedJobs().map(publicJob));
      if (req.method === 'POST') return send(res, 201, publicJob(createJob(await readJson(req), now)));
      return notFound(res);
    }
    const m = /^\/api\/cron\/([^/]+)(\/runs|\/run)?$/.exec(p);
    if (!m) return notFound(res);
    const id = decodeURIComponent(m[1]);
    const job = jobs.get(id);
    if (!job) return notFound(res, `job ${id}`);
    if (!m[2]) {
      if (req.method === 'GET') return send(res, 200, publicJob(job));
      if (req.method === 'PATCH') return send(res, 200, publicJob(updateJob(job, await readJson(req), now)));
      if (req.method === 'DELETE') {
        jobs.delete(id);
        return send(res, 204);
      }
      return notFound(res);
    }
    if (m[2] === '/runs' && req.method === 'GET') {
      const raw = url.searchParams.get('limit');
      const limit = raw === null || raw.trim() === '' ? 20 : Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        return send(res, 400, { error: { code: 'invalid_limit', message: 'limit is a whole number from 1 to 1000' } });
      }
      return send(res, 200, jobRuns.filter((r) => r.job_id === id).reverse().slice(0, limit));
    }
    if (m[2] === '/run' && req.method === 'POST') {
      // Queued: the scheduler's next tick starts it (asking again before then asks for the same run).
      if (job.run_requested_ms == null) job.run_requested_ms = now;
      return send(res, 202, { occurrence_ms: job.run_requested_ms });
    }
    return notFound(res);
  } catch (error) {
    if (error.code === 'invalid_input') return send(res, 400, { error: { code: 'invalid_input', message: error.message } });
    throw error;
  }
}

// ------------------------------------------------------------- WebSocket

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const origin = req.headers.origin;
  const own = `http://${req.headers.host}`;
  if (url.pathname !== '/v1/chat/stream' || (origin && origin !== own)) {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, authed(req)));
});

function onConnection(ws, cookieAuthed) {
  let isAuthed = cookieAuthed;
  const running = new Map(); // id -> {cancelled}
  const out = (frame) => { if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame)); };
  ws.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(isBinary ? '' : data.toString('utf8'));
    } catch {
      return out({ type: 'error', id: null, code: 'invalid_json', message: 'frames are JSON text' });
    }
    if (!isAuthed) {
      if (msg && msg.type === 'auth' && typeof msg.token === 'string' && safeEqual(msg.token, TOKEN)) {
        isAuthed = true;
        return undefined;
      }
      ws.close(4401, 'unauthorized');
      return undefined;
    }
    if (msg.type === 'ping') return out({ type: 'pong' });
    if (msg.type === 'cancel') {
      const turn = running.get(msg.id);
      if (turn) turn.cancelled = true;
      return undefined;
    }
    if (msg.type === 'chat' && typeof msg.id === 'string' && typeof msg.text === 'string') {
      const turn = { cancelled: false };
      running.set(msg.id, turn);
      chat(msg, turn, out).finally(() => running.delete(msg.id));
      return undefined;
    }
    return out({ type: 'error', id: msg.id ?? null, code: 'invalid_input', message: `unknown frame type ${msg.type}` });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function chat(msg, turn, out) {
  const { id, text } = msg;
  const key = typeof msg.session === 'string' && msg.session ? msg.session : null;
  const answer = `echo: ${text}`;
  const delay = /slow/i.test(text) ? 250 : 15;
  const toolMessages = [];
  await sleep(120);
  if (/tool/i.test(text)) {
    const args = { query: text.slice(0, 40), limit: 3 };
    out({ type: 'tool_start', id, tool_id: 'call_1', name: 'memory_search', arguments: args });
    await sleep(200);
    const result = JSON.stringify([{ text: 'A remembered fact', score: 0.82 }]);
    out({ type: 'tool_end', id, tool_id: 'call_1', name: 'memory_search', result, ok: true });
    out({ type: 'tool_start', id, tool_id: 'call_2', name: 'shell', arguments: { command: 'ls /nonexistent' } });
    await sleep(150);
    out({ type: 'tool_end', id, tool_id: 'call_2', name: 'shell', result: 'ls: cannot access /nonexistent: No such file or directory', ok: false });
    toolMessages.push(
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', name: 'memory_search', arguments: args }, { id: 'call_2', name: 'shell', arguments: { command: 'ls /nonexistent' } }] },
      { role: 'tool', content: result, tool_call_id: 'call_1' },
      { role: 'tool', content: 'ls: cannot access /nonexistent: No such file or directory', tool_call_id: 'call_2' },
    );
  }
  for (let i = 0; i < answer.length; i += 4) {
    if (turn.cancelled) return;
    out({ type: 'delta', id, text: answer.slice(i, i + 4) });
    await sleep(delay);
    if (/fail/i.test(text) && i > 8) {
      out({ type: 'error', id, code: 'llm_failed', message: 'the model answered HTTP 500: upstream exploded' });
      return;
    }
  }
  if (turn.cancelled) return;
  const now = Date.now();
  if (key) {
    let s = sessions.get(key);
    if (!s) {
      s = { key, title: null, created_at_ms: now, updated_at_ms: now, messages: [] };
      sessions.set(key, s);
    }
    storeTurn(s, [
      { role: 'user', content: text },
      ...toolMessages,
      { role: 'assistant', content: answer },
    ], now);
  }
  out({
    type: 'done',
    id,
    message: { role: 'assistant', content: answer },
    usage: { prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 },
    ...(key ? { session_key: key } : {}),
  });
}

server.listen(PORT, '127.0.0.1', () => {
  console.log(`mock gateway listening on http://127.0.0.1:${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const client of wss.clients) client.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}

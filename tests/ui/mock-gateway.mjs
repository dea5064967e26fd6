// A stand-in for the OCG gateway, following docs/gateway.md: the UI's static
// files (with the real CSP), login/logout/me, sessions, memory, status and
// the chat WebSocket. The agent behind it echoes `echo: <text>`, like the fake LLM of
// the real stack; a message containing "tool" also runs a fake tool, one
// containing "fail" ends in an error, one containing "slow" streams slowly.
//
//   node tests/ui/mock-gateway.mjs [--port N] [--token T]
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

/** key -> {key, title, created_at_ms, updated_at_ms, messages: []} */
const sessions = new Map();
/** The user's memories, oldest first (docs/gateway.md, "Memory"). */
const memories = [];
let memoryIds = 0;
let memoryClock = 0;
const failures = new Map(); // ip -> [times]

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
    s.updated_at_ms = now;
    s.messages.push(
      { role: 'user', content: text, created_at_ms: now },
      ...toolMessages.map((m) => ({ ...m, created_at_ms: now })),
      { role: 'assistant', content: answer, created_at_ms: now },
    );
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

// A fake OpenAI-compatible vendor for the UI test of the real stack:
// `POST /v1/chat/completions` answers `echo: <last user message>`, streamed as
// server-sent events a few characters per chunk (or as one chat.completion
// when `stream` is false). Point the agent at it with
// OPENAI_BASE_URL=http://127.0.0.1:<port>/v1.
//
//   node tests/ui/fake-llm.mjs [--port N]
//
// Prints `fake llm listening on http://127.0.0.1:N/v1` once ready.
import http from 'node:http';

const portArg = process.argv.indexOf('--port');
const PORT = Number(portArg !== -1 ? process.argv[portArg + 1] : process.env.FAKE_LLM_PORT || 0);
const CHUNK = 3;
const DELAY_MS = 12;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part.text === 'string' ? part.text : '')).join('');
  }
  return '';
}

function lastUserText(body) {
  const messages = Array.isArray(body && body.messages) ? body.messages : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i] && messages[i].role === 'user') return textOf(messages[i].content);
  }
  return '';
}

function json(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  if (req.method === 'GET' && (pathname === '/v1/models' || pathname === '/models')) {
    return json(res, 200, { object: 'list', data: [{ id: 'fake-model', object: 'model', owned_by: 'ocg-tests' }] });
  }
  if (req.method !== 'POST' || !/^(\/v1)?\/chat\/completions$/.test(pathname)) {
    return json(res, 404, { error: { message: 'not found', type: 'invalid_request_error' } });
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  let body;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error' } });
  }
  const answer = `echo: ${lastUserText(body)}`;
  const model = typeof body.model === 'string' ? body.model : 'fake-model';
  const id = `chatcmpl-fake-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const usage = { prompt_tokens: 10, completion_tokens: Math.ceil(answer.length / 4), total_tokens: 10 + Math.ceil(answer.length / 4) };

  if (!body.stream) {
    return json(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: answer }, finish_reason: 'stop' }],
      usage,
    });
  }

  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  let closed = false;
  res.on('close', () => { closed = true; });
  const event = (choices, extra = {}) => {
    if (!closed) res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`);
  };
  event([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
  for (let i = 0; i < answer.length && !closed; i += CHUNK) {
    event([{ index: 0, delta: { content: answer.slice(i, i + CHUNK) }, finish_reason: null }]);
    await sleep(DELAY_MS);
  }
  event([{ index: 0, delta: {}, finish_reason: 'stop' }]);
  if (body.stream_options && body.stream_options.include_usage) event([], { usage });
  if (!closed) res.end('data: [DONE]\n\n');
  return undefined;
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`fake llm listening on http://127.0.0.1:${server.address().port}/v1`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

//! OpenAI-compatible `/chat/completions`, streamed.
//!
//! One implementation serves every server that speaks this dialect (OpenAI,
//! OpenRouter, Ollama, vLLM, llama.cpp's server, …), so the parser is
//! lenient where they differ and strict where a silent error would hurt:
//!
//! - Tool-call fragments are merged by `index` (a missing index continues the
//!   last call unless a new `id` starts one) and emitted as complete
//!   [`ToolCall`]s when the model finishes. Arguments that are not valid JSON
//!   are kept as a JSON string holding the raw text; empty ones become `{}`.
//! - The answer ends at `data: [DONE]`. A body that ends after a
//!   `finish_reason` but without `[DONE]` is accepted (some servers omit it);
//!   one that ends before either, or breaks, is a
//!   [`ProviderError::Protocol`] item, never a silent short answer.
//! - `stream_options.include_usage` asks for the final usage chunk, which
//!   arrives after the `finish_reason` chunk, so `Done` waits for `[DONE]`.
//!
//! The API key is only ever sent in the `Authorization` header (marked
//! sensitive), is redacted from `Debug` output, and is scrubbed from vendor
//! error messages that echo it.
//!
//! The private `transport` submodule holds what this provider shares with
//! [`super::anthropic`]: the SSE decoder, the stream driver and the HTTP
//! error classification.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ocg_core::{Message, Role, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
    ToolSpec,
};
use transport::{EventParser, Item, SseEvent};

/// Settings of an [`OpenAiProvider`].
///
/// `Debug` prints the API key as `[redacted]`.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Short name for logs and errors (`openai`, `openrouter`, `ollama`, …).
    pub name: String,
    /// The API root, e.g. `https://api.openai.com/v1`; requests go to
    /// `{base_url}/chat/completions`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (local servers need none).
    pub api_key: Option<String>,
    /// The model used when a request names none.
    pub model: String,
    /// Connect timeout, and the longest silence tolerated while waiting for
    /// the response headers or between two reads of the streamed body.
    pub timeout: Duration,
}

impl OpenAiConfig {
    /// OpenAI's own API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An OpenAI-compatible chat-completions endpoint, streamed over SSE.
///
/// Cheap to share behind an `Arc`; the HTTP client pools connections.
pub struct OpenAiProvider {
    name: String,
    model: String,
    url: reqwest::Url,
    client: reqwest::Client,
    /// Kept only to scrub it from vendor error messages.
    api_key: Option<String>,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Build the provider.
    ///
    /// Fails with [`ProviderError::Connect`] when `base_url` is not a URL or
    /// the HTTP client cannot be built, and with [`ProviderError::Auth`] when
    /// the API key cannot be sent in a header.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let url = transport::endpoint(&config.name, &config.base_url, "chat/completions")?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = config.api_key.as_deref().filter(|key| !key.is_empty()) {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                transport::secret_header(&config.name, &format!("Bearer {key}"))?,
            );
        }
        let client = transport::client(&config.name, headers, config.timeout)?;
        Ok(OpenAiProvider {
            name: config.name,
            model: config.model,
            url,
            client,
            api_key: config.api_key.filter(|key| !key.is_empty()),
        })
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let body = wire_request(request, &self.model);
        tracing::debug!(provider = %self.name, model = body.model, url = %self.url, "chat completion request");
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body)
            .send()
            .await
            .map_err(|error| transport::request_error(&self.name, &error))?;
        if !response.status().is_success() {
            return Err(
                transport::status_error(&self.name, response, self.api_key.as_deref()).await,
            );
        }
        Ok(transport::event_stream(
            response,
            self.name.clone(),
            ChunkParser::new(self.name.clone()),
        ))
    }
}

// ---------------------------------------------------------------------------
// Request wire format.

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
    stream_options: StreamOptions,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    /// `null` for an assistant message that only calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    /// The arguments as a JSON document in a string, as the API wants them.
    arguments: String,
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

fn wire_request<'a>(request: &'a CompletionRequest, default_model: &'a str) -> WireRequest<'a> {
    WireRequest {
        model: request.model.as_deref().unwrap_or(default_model),
        messages: request.messages.iter().map(wire_message).collect(),
        tools: request.tools.iter().map(wire_tool).collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
    }
}

fn wire_message(message: &Message) -> WireMessage<'_> {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let tool_calls: Vec<WireToolCall<'_>> = match message.role {
        Role::Assistant => message.tool_calls.iter().map(wire_tool_call).collect(),
        _ => Vec::new(),
    };
    let content = if message.content.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(message.content.as_str())
    };
    let tool_call_id = match message.role {
        Role::Tool => Some(message.tool_call_id.as_deref().unwrap_or_default()),
        _ => None,
    };
    WireMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
    }
}

fn wire_tool_call(call: &ToolCall) -> WireToolCall<'_> {
    let arguments = match &call.arguments {
        // Invalid JSON the model produced earlier, kept raw: send it back as it was.
        Value::String(raw) => raw.clone(),
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    WireToolCall {
        id: &call.id,
        kind: "function",
        function: WireFunctionCall {
            name: &call.name,
            arguments,
        },
    }
}

fn wire_tool(tool: &ToolSpec) -> WireTool<'_> {
    WireTool {
        kind: "function",
        function: WireFunction {
            name: &tool.name,
            description: &tool.description,
            parameters: &tool.parameters,
        },
    }
}

// ---------------------------------------------------------------------------
// Stream wire format.

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: Option<u32>,
}

/// A tool call being assembled from fragments.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Turns `data` payloads into [`ProviderEvent`]s.
#[derive(Debug)]
struct ChunkParser {
    provider: String,
    calls: BTreeMap<usize, PartialCall>,
    last_index: Option<usize>,
    usage: Option<Usage>,
    finish_reason: Option<FinishReason>,
}

impl ChunkParser {
    fn new(provider: String) -> Self {
        ChunkParser {
            provider,
            calls: BTreeMap::new(),
            last_index: None,
            usage: None,
            finish_reason: None,
        }
    }

    fn merge_tool_call(&mut self, delta: ToolCallDelta) {
        let index = match delta.index {
            Some(index) => index,
            // No index: a new id starts a call, anything else continues the last one.
            None => match (self.last_index, &delta.id) {
                (Some(last), Some(id))
                    if self.calls.get(&last).is_some_and(|call| call.id != *id) =>
                {
                    self.calls.keys().next_back().map_or(0, |max| max + 1)
                }
                (Some(last), _) => last,
                (None, _) => 0,
            },
        };
        self.last_index = Some(index);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            if call.id.is_empty() {
                call.id = id;
            }
        }
        if let Some(function) = delta.function {
            if let Some(name) = function.name.filter(|name| !name.is_empty()) {
                if call.name.is_empty() {
                    call.name = name;
                }
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    /// Emit every assembled tool call, in index order.
    fn flush_tool_calls(&mut self, out: &mut VecDeque<Item>) {
        for (_, call) in std::mem::take(&mut self.calls) {
            out.push_back(Ok(ProviderEvent::ToolCall(ToolCall {
                id: call.id,
                name: call.name,
                arguments: transport::parse_arguments(call.arguments),
            })));
        }
        self.last_index = None;
    }

    fn finish(&mut self, out: &mut VecDeque<Item>) {
        let had_tool_calls = !self.calls.is_empty();
        self.flush_tool_calls(out);
        let finish_reason = self.finish_reason.take().unwrap_or(if had_tool_calls {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        });
        out.push_back(Ok(ProviderEvent::Done {
            usage: self.usage.take(),
            finish_reason,
        }));
    }

    fn stream_error(&self, error: &Value) -> ProviderError {
        let message = transport::error_message(error)
            .unwrap_or_else(|| "the server reported an error in the stream".to_owned());
        let status = error
            .get("code")
            .and_then(|code| {
                code.as_u64()
                    .or_else(|| code.as_str().and_then(|code| code.parse().ok()))
            })
            .and_then(|code| u16::try_from(code).ok())
            .filter(|code| (400..600).contains(code));
        match status {
            Some(status) => transport::classify(&self.provider, status, message, None),
            None => ProviderError::Server {
                provider: self.provider.clone(),
                status: 500,
                message,
            },
        }
    }
}

impl EventParser for ChunkParser {
    fn on_event(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.finish(out);
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(error) => {
                out.push_back(Err(ProviderError::Protocol {
                    provider: self.provider.clone(),
                    message: format!("undecodable stream chunk: {error}"),
                }));
                return;
            }
        };
        if let Some(error) = chunk.error.filter(|error| !error.is_null()) {
            out.push_back(Err(self.stream_error(&error)));
            return;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage
                    .total_tokens
                    .unwrap_or(usage.prompt_tokens.saturating_add(usage.completion_tokens)),
            });
        }
        for choice in chunk.choices.unwrap_or_default() {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    out.push_back(Ok(ProviderEvent::TextDelta(text)));
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.merge_tool_call(call);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&reason));
                self.flush_tool_calls(out);
            }
        }
    }

    fn on_end(&mut self, out: &mut VecDeque<Item>) {
        if self.finish_reason.is_some() {
            self.finish(out);
        } else {
            out.push_back(Err(ProviderError::Protocol {
                provider: self.provider.clone(),
                message: "the stream ended before [DONE]".to_owned(),
            }));
        }
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

// ---------------------------------------------------------------------------

/// HTTP and SSE plumbing shared by the providers of this crate: the SSE
/// decoder, the stream driver, and the classification of HTTP failures into
/// [`ProviderError`]s.
pub(super) mod transport {
    use std::collections::VecDeque;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use futures_util::{Stream, StreamExt};
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::Value;

    use super::super::{ProviderError, ProviderEvent, ProviderStream};

    /// One item of a [`ProviderStream`].
    pub(in crate::providers) type Item = Result<ProviderEvent, ProviderError>;

    /// The longest SSE line accepted; a longer one is a protocol error rather
    /// than unbounded memory.
    const MAX_LINE: usize = 16 << 20;

    /// The most of an error body read to find the vendor's message.
    const MAX_ERROR_BODY: usize = 64 << 10;

    /// One Server-Sent Event.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub(in crate::providers) struct SseEvent {
        /// The `event:` field; empty when absent.
        pub(in crate::providers) event: String,
        /// The `data:` lines, joined with `\n`.
        pub(in crate::providers) data: String,
    }

    /// Splits an SSE byte stream into events, per the WHATWG rules: lines
    /// end in CRLF, LF or CR (each may be split across chunks), a blank line
    /// dispatches, `:` starts a comment. Bytes are buffered until a line is
    /// complete, so a multi-byte UTF-8 character split across network chunks
    /// is decoded whole.
    #[derive(Debug, Default)]
    pub(in crate::providers) struct SseDecoder {
        line: Vec<u8>,
        after_cr: bool,
        event: String,
        data: String,
    }

    impl SseDecoder {
        /// Feed bytes; returns every event they complete, or an error when a
        /// line grows past the limit.
        pub(in crate::providers) fn feed(
            &mut self,
            mut bytes: &[u8],
        ) -> Result<Vec<SseEvent>, String> {
            let mut events = Vec::new();
            while !bytes.is_empty() {
                if self.after_cr {
                    self.after_cr = false;
                    if bytes[0] == b'\n' {
                        bytes = &bytes[1..];
                        continue;
                    }
                }
                match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                    Some(end) => {
                        self.line.extend_from_slice(&bytes[..end]);
                        self.after_cr = bytes[end] == b'\r';
                        bytes = &bytes[end + 1..];
                        self.end_line(&mut events);
                    }
                    None => {
                        self.line.extend_from_slice(bytes);
                        bytes = &[];
                    }
                }
                if self.line.len() > MAX_LINE {
                    return Err(format!("an SSE line is longer than {MAX_LINE} bytes"));
                }
            }
            Ok(events)
        }

        /// The body ended: dispatch what is buffered (lenient with servers
        /// that omit the final blank line).
        pub(in crate::providers) fn finish(&mut self) -> Vec<SseEvent> {
            let mut events = Vec::new();
            if !self.line.is_empty() {
                self.end_line(&mut events);
            }
            self.dispatch(&mut events);
            events
        }

        fn end_line(&mut self, events: &mut Vec<SseEvent>) {
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                self.dispatch(events);
                return;
            }
            let line = String::from_utf8_lossy(&line);
            if line.starts_with(':') {
                return;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
                "event" => value.clone_into(&mut self.event),
                _ => {}
            }
        }

        fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
            let event = std::mem::take(&mut self.event);
            if self.data.is_empty() {
                return;
            }
            let mut data = std::mem::take(&mut self.data);
            data.pop();
            events.push(SseEvent { event, data });
        }
    }

    /// A vendor's stream protocol over SSE events.
    ///
    /// The driver stops after the first `Done` or `Err` item a parser
    /// pushes, so a parser need not track whether it has finished.
    pub(in crate::providers) trait EventParser: Send + 'static {
        /// Handle one event, pushing the items it produces.
        fn on_event(&mut self, event: SseEvent, out: &mut VecDeque<Item>);
        /// The body ended before a terminal item: push `Done` (when the
        /// answer is complete after all) or a protocol error.
        fn on_end(&mut self, out: &mut VecDeque<Item>);
    }

    struct Driver<B, P> {
        body: B,
        decoder: SseDecoder,
        parser: P,
        pending: VecDeque<Item>,
        provider: String,
        body_done: bool,
        finished: bool,
    }

    /// Run `parser` over the SSE body of `response`. The stream ends after
    /// the first `Done` or error; dropping it drops the connection.
    pub(in crate::providers) fn event_stream<P: EventParser>(
        response: reqwest::Response,
        provider: String,
        parser: P,
    ) -> ProviderStream {
        drive(Box::pin(response.bytes_stream()), provider, parser)
    }

    fn drive<B, C, P>(body: B, provider: String, parser: P) -> ProviderStream
    where
        B: Stream<Item = Result<C, reqwest::Error>> + Unpin + Send + 'static,
        C: AsRef<[u8]>,
        P: EventParser,
    {
        let driver = Driver {
            body,
            decoder: SseDecoder::default(),
            parser,
            pending: VecDeque::new(),
            provider,
            body_done: false,
            finished: false,
        };
        Box::pin(futures_util::stream::unfold(driver, |mut d| async move {
            loop {
                if d.finished {
                    return None;
                }
                if let Some(item) = d.pending.pop_front() {
                    if matches!(item, Err(_) | Ok(ProviderEvent::Done { .. })) {
                        d.finished = true;
                        d.pending.clear();
                    }
                    return Some((item, d));
                }
                if d.body_done {
                    return None;
                }
                match d.body.next().await {
                    Some(Ok(bytes)) => match d.decoder.feed(bytes.as_ref()) {
                        Ok(events) => {
                            for event in events {
                                d.parser.on_event(event, &mut d.pending);
                            }
                        }
                        Err(message) => d.pending.push_back(Err(ProviderError::Protocol {
                            provider: d.provider.clone(),
                            message,
                        })),
                    },
                    Some(Err(error)) => {
                        d.body_done = true;
                        d.pending.push_back(Err(body_error(&d.provider, &error)));
                    }
                    None => {
                        d.body_done = true;
                        for event in d.decoder.finish() {
                            d.parser.on_event(event, &mut d.pending);
                        }
                        if !d
                            .pending
                            .iter()
                            .any(|item| matches!(item, Err(_) | Ok(ProviderEvent::Done { .. })))
                        {
                            d.parser.on_end(&mut d.pending);
                        }
                    }
                }
            }
        }))
    }

    /// `{base_url}/{path}` as a URL.
    pub(in crate::providers) fn endpoint(
        provider: &str,
        base_url: &str,
        path: &str,
    ) -> Result<reqwest::Url, ProviderError> {
        let joined = format!("{}/{path}", base_url.trim_end_matches('/'));
        reqwest::Url::parse(&joined).map_err(|error| ProviderError::Connect {
            provider: provider.to_owned(),
            message: format!("invalid base URL {base_url:?}: {error}"),
        })
    }

    /// A header value holding a secret, marked sensitive so that it is never
    /// printed.
    pub(in crate::providers) fn secret_header(
        provider: &str,
        value: &str,
    ) -> Result<HeaderValue, ProviderError> {
        let mut value = HeaderValue::from_str(value).map_err(|_| ProviderError::Auth {
            provider: provider.to_owned(),
            message: "the API key contains characters not allowed in an HTTP header".to_owned(),
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// An HTTP client with `headers` on every request, a connect timeout and
    /// an idle-read timeout of `timeout`.
    pub(in crate::providers) fn client(
        provider: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<reqwest::Client, ProviderError> {
        reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|error| ProviderError::Connect {
                provider: provider.to_owned(),
                message: format!("cannot build the HTTP client: {}", chain(&error)),
            })
    }

    /// A failure to send the request or read the response headers.
    pub(in crate::providers) fn request_error(
        provider: &str,
        error: &reqwest::Error,
    ) -> ProviderError {
        if error.is_timeout() {
            ProviderError::Timeout {
                provider: provider.to_owned(),
            }
        } else {
            ProviderError::Connect {
                provider: provider.to_owned(),
                message: chain(error),
            }
        }
    }

    /// A failure while reading the streamed body: a broken stream.
    fn body_error(provider: &str, error: &reqwest::Error) -> ProviderError {
        if error.is_timeout() {
            ProviderError::Timeout {
                provider: provider.to_owned(),
            }
        } else {
            ProviderError::Protocol {
                provider: provider.to_owned(),
                message: format!("the stream broke: {}", chain(error)),
            }
        }
    }

    /// An error and its sources, `: `-separated.
    fn chain(error: &(dyn std::error::Error + 'static)) -> String {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }

    /// Classify a non-success response, with the vendor's message when the
    /// body carries one. `secret` is scrubbed from that message.
    pub(in crate::providers) async fn status_error(
        provider: &str,
        mut response: reqwest::Response,
        secret: Option<&str>,
    ) -> ProviderError {
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        let body = String::from_utf8_lossy(&body);
        let mut message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|json| error_message(&json))
            .unwrap_or_else(|| {
                let text: String = body.trim().chars().take(500).collect();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no message").to_owned()
                } else {
                    text
                }
            });
        if let Some(secret) = secret.filter(|secret| !secret.is_empty()) {
            message = message.replace(secret, "[redacted]");
        }
        classify(provider, status.as_u16(), message, retry_after)
    }

    /// The error class of an HTTP status.
    pub(in crate::providers) fn classify(
        provider: &str,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    ) -> ProviderError {
        let provider = provider.to_owned();
        match status {
            429 => {
                tracing::debug!(%provider, %message, ?retry_after, "rate limited");
                ProviderError::RateLimited {
                    provider,
                    retry_after,
                }
            }
            401 | 403 => ProviderError::Auth { provider, message },
            400..=499 => ProviderError::BadRequest {
                provider,
                status,
                message,
            },
            500..=599 => ProviderError::Server {
                provider,
                status,
                message,
            },
            _ => ProviderError::Protocol {
                provider,
                message: format!("unexpected HTTP status {status}: {message}"),
            },
        }
    }

    /// The message of a vendor error body: `{"error":{"message":…}}`
    /// (OpenAI, Anthropic), `{"error":"…"}` (Ollama) or `{"message":…}`.
    /// Also accepts the inner `error` object itself.
    pub(in crate::providers) fn error_message(json: &Value) -> Option<String> {
        let text = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let error = json.get("error");
        text(error.and_then(|error| error.get("message")))
            .or_else(|| text(error))
            .or_else(|| text(json.get("message")))
    }

    /// How long the vendor asks us to wait: `retry-after-ms` (OpenAI), else
    /// `retry-after` as seconds or an HTTP date.
    pub(in crate::providers) fn retry_after(
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Option<Duration> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let seconds = |text: &str| {
            text.parse::<f64>()
                .ok()
                .filter(|value| value.is_finite() && *value >= 0.0)
        };
        if let Some(ms) = header("retry-after-ms").and_then(seconds) {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
        let value = header("retry-after")?;
        if let Some(secs) = seconds(value) {
            return Some(Duration::from_secs_f64(secs));
        }
        let at = UNIX_EPOCH + Duration::from_secs(http_date(value)?);
        Some(at.duration_since(now).unwrap_or_default())
    }

    /// Seconds since the Unix epoch of an IMF-fixdate
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP date format servers send.
    fn http_date(text: &str) -> Option<u64> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
            return None;
        };
        let day: u64 = day.parse().ok()?;
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|name| name == month)? as u64
            + 1;
        let year: u64 = year.parse().ok()?;
        let mut hms = time.split(':').map(|part| part.parse::<u64>().ok());
        let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
        if year < 1970 || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        // Days from civil (Howard Hinnant), for years from 1970.
        let (y, m) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = y / 400;
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = (era * 146_097 + doe).checked_sub(719_468)?;
        Some(days * 86_400 + hour * 3600 + minute * 60 + second)
    }

    /// Tool-call arguments as JSON: empty → `{}`, invalid → the raw text as
    /// a JSON string.
    pub(in crate::providers) fn parse_arguments(raw: String) -> Value {
        if raw.trim().is_empty() {
            return Value::Object(serde_json::Map::new());
        }
        serde_json::from_str(&raw).unwrap_or(Value::String(raw))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn feed_all(decoder: &mut SseDecoder, input: &[u8], step: usize) -> Vec<SseEvent> {
            let mut events = Vec::new();
            for piece in input.chunks(step) {
                events.extend(decoder.feed(piece).unwrap());
            }
            events.extend(decoder.finish());
            events
        }

        #[test]
        fn sse_decoder_handles_any_split_and_line_ending() {
            let input = "event: a\r\ndata: {\"t\":\"é€😀\"}\r\n\r\n: comment\rdata: x\rdata:y\r\rdata: [DONE]\n\n";
            let expected = vec![
                SseEvent {
                    event: "a".into(),
                    data: "{\"t\":\"é€😀\"}".into(),
                },
                SseEvent {
                    event: String::new(),
                    data: "x\ny".into(),
                },
                SseEvent {
                    event: String::new(),
                    data: "[DONE]".into(),
                },
            ];
            for step in 1..=input.len() {
                let mut decoder = SseDecoder::default();
                assert_eq!(
                    feed_all(&mut decoder, input.as_bytes(), step),
                    expected,
                    "step {step}"
                );
            }
        }

        #[test]
        fn sse_decoder_flushes_an_unterminated_last_event() {
            let mut decoder = SseDecoder::default();
            assert!(decoder.feed(b"data: [DONE]").unwrap().is_empty());
            assert_eq!(decoder.finish()[0].data, "[DONE]");
        }

        #[test]
        fn retry_after_forms() {
            let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
            let headers = |pairs: &[(&'static str, &'static str)]| {
                let mut map = HeaderMap::new();
                for (name, value) in pairs {
                    map.insert(*name, HeaderValue::from_static(value));
                }
                map
            };
            assert_eq!(
                retry_after(&headers(&[("retry-after", "2")]), now),
                Some(Duration::from_secs(2))
            );
            assert_eq!(
                retry_after(
                    &headers(&[("retry-after", "2"), ("retry-after-ms", "150")]),
                    now
                ),
                Some(Duration::from_millis(150))
            );
            assert_eq!(
                retry_after(
                    &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
                    now
                ),
                Some(Duration::from_secs(10))
            );
            assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
            assert_eq!(retry_after(&headers(&[]), now), None);
        }

        #[test]
        fn http_dates() {
            assert_eq!(
                http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
                Some(784_111_777)
            );
            assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
            assert_eq!(
                http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
                Some(1_835_438_400)
            );
            assert_eq!(http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        }

        #[test]
        fn arguments_parsing() {
            assert_eq!(parse_arguments(String::new()), serde_json::json!({}));
            assert_eq!(
                parse_arguments("{\"a\":1}".into()),
                serde_json::json!({"a":1})
            );
            assert_eq!(
                parse_arguments("{\"a\":".into()),
                Value::String("{\"a\":".into())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use futures_util::StreamExt;
    use serde_json::json;

    use super::*;

    const KEY: &str = "sk-test-secret-key";

    /// Requests the fake received: (headers, JSON body).
    type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

    async fn spawn(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/v1")
    }

    /// A fake `/v1/chat/completions` answering every request with `respond()`,
    /// recording what it received.
    async fn fake<F>(respond: F) -> (String, Seen)
    where
        F: Fn() -> Response + Clone + Send + Sync + 'static,
    {
        let seen = Seen::default();
        let router = Router::new()
            .route(
                "/v1/chat/completions",
                post(
                    move |State(seen): State<Seen>, headers: HeaderMap, body: axum::Json<Value>| {
                        let respond = respond.clone();
                        async move {
                            seen.lock().unwrap().push((headers, body.0));
                            respond()
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        (spawn(router).await, seen)
    }

    /// An SSE response whose body arrives as `chunks`, each its own write.
    fn sse(chunks: Vec<Vec<u8>>) -> Response {
        let body = futures_util::stream::iter(chunks).then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, Infallible>(Bytes::from(chunk))
        });
        (
            [("content-type", "text/event-stream")],
            Body::from_stream(body),
        )
            .into_response()
    }

    /// SSE `data:` events for JSON chunks, then `[DONE]`.
    fn events(chunks: &[Value]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = chunks
            .iter()
            .map(|chunk| format!("data: {chunk}\n\n").into_bytes())
            .collect();
        out.push(b"data: [DONE]\n\n".to_vec());
        out
    }

    fn provider(base_url: String) -> OpenAiProvider {
        OpenAiProvider::new(OpenAiConfig {
            name: "openai".into(),
            base_url,
            api_key: Some(KEY.into()),
            model: "gpt-test".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    async fn collect(provider: &OpenAiProvider, request: &CompletionRequest) -> Vec<Item> {
        match provider.stream(request).await {
            Ok(stream) => stream.collect().await,
            Err(error) => vec![Err(error)],
        }
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            messages: vec![Message::user("hi")],
            ..Default::default()
        }
    }

    fn text_chunk(text: &str) -> Value {
        json!({"choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
    }

    #[tokio::test]
    async fn streams_text_and_usage() {
        let body = events(&[
            json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
            text_chunk("Hel"),
            text_chunk("lo"),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}),
        ]);
        let (url, seen) = fake(move || sse(body.clone())).await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(
            items,
            vec![
                Ok(ProviderEvent::TextDelta("Hel".into())),
                Ok(ProviderEvent::TextDelta("lo".into())),
                Ok(ProviderEvent::Done {
                    usage: Some(Usage {
                        prompt_tokens: 7,
                        completion_tokens: 2,
                        total_tokens: 9
                    }),
                    finish_reason: FinishReason::Stop,
                }),
            ]
        );
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["messages"], json!([{"role":"user","content":"hi"}]));
        assert!(body.get("tools").is_none());
    }

    #[tokio::test]
    async fn merges_tool_call_fragments_by_index() {
        let call = |index: usize, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut function = json!({ "arguments": args });
            if let Some(name) = name {
                function["name"] = json!(name);
            }
            let mut call = json!({ "index": index, "function": function });
            if let Some(id) = id {
                call["id"] = json!(id);
                call["type"] = json!("function");
            }
            json!({"choices":[{"index":0,"delta":{"tool_calls":[call]}}]})
        };
        let body = events(&[
            call(0, Some("call_a"), Some("weather"), ""),
            call(0, None, None, "{\"ci"),
            call(1, Some("call_b"), Some("time"), "{\"tz\""),
            call(0, None, None, "ty\": \"Pa"),
            call(1, None, None, ": \"UTC\"}"),
            call(0, None, None, "ris\"}"),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ]);
        let (url, seen) = fake(move || sse(body.clone())).await;
        let request = CompletionRequest {
            messages: vec![Message::user("weather?")],
            tools: vec![ToolSpec {
                name: "weather".into(),
                description: "Weather in a city".into(),
                parameters: json!({"type":"object","properties":{"city":{"type":"string"}}}),
            }],
            max_tokens: Some(100),
            temperature: Some(0.5),
            ..Default::default()
        };
        let items = collect(&provider(url), &request).await;
        assert_eq!(
            items,
            vec![
                Ok(ProviderEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "weather".into(),
                    arguments: json!({"city": "Paris"}),
                })),
                Ok(ProviderEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "time".into(),
                    arguments: json!({"tz": "UTC"}),
                })),
                Ok(ProviderEvent::Done {
                    usage: None,
                    finish_reason: FinishReason::ToolCalls
                }),
            ]
        );
        let body = &seen.lock().unwrap()[0].1;
        assert_eq!(
            body["tools"],
            json!([{"type":"function","function":{
                "name":"weather",
                "description":"Weather in a city",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}}}
            }}])
        );
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["temperature"], 0.5);
    }

    #[tokio::test]
    async fn keeps_invalid_tool_arguments_as_a_string() {
        let body = events(&[
            json!({"choices":[{"index":0,"delta":{"tool_calls":[
                {"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\": 1,"}},
                {"index":1,"id":"c2","type":"function","function":{"name":"g","arguments":""}}
            ]}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ]);
        let (url, _) = fake(move || sse(body.clone())).await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(
            items[0],
            Ok(ProviderEvent::ToolCall(ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: Value::String("{\"a\": 1,".into()),
            }))
        );
        assert_eq!(
            items[1],
            Ok(ProviderEvent::ToolCall(ToolCall {
                id: "c2".into(),
                name: "g".into(),
                arguments: json!({}),
            }))
        );
        assert!(matches!(items[2], Ok(ProviderEvent::Done { .. })));
    }

    #[tokio::test]
    async fn maps_messages_to_the_wire_format() {
        let (url, seen) = fake(|| sse(events(&[text_chunk("ok")]))).await;
        let mut assistant = Message::assistant("");
        assistant.tool_calls = vec![
            ToolCall {
                id: "c1".into(),
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            },
            ToolCall {
                id: "c2".into(),
                name: "broken".into(),
                arguments: Value::String("{oops".into()),
            },
        ];
        let mut tool = Message::new(Role::Tool, "sunny");
        tool.tool_call_id = Some("c1".into());
        let request = CompletionRequest {
            messages: vec![
                Message::system("be brief"),
                Message::user("weather?"),
                assistant,
                tool,
            ],
            model: Some("other-model".into()),
            ..Default::default()
        };
        let items = collect(&provider(url), &request).await;
        assert!(matches!(items.last(), Some(Ok(ProviderEvent::Done { .. }))));
        let body = &seen.lock().unwrap()[0].1;
        assert_eq!(body["model"], "other-model");
        assert_eq!(
            body["messages"],
            json!([
                {"role":"system","content":"be brief"},
                {"role":"user","content":"weather?"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"c1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"c2","type":"function","function":{"name":"broken","arguments":"{oops"}}
                ]},
                {"role":"tool","content":"sunny","tool_call_id":"c1"}
            ])
        );
    }

    #[tokio::test]
    async fn classifies_http_errors() {
        let status =
            |code: StatusCode, headers: Vec<(&'static str, &'static str)>, body: &'static str| {
                move || {
                    let mut response = (code, body).into_response();
                    for (name, value) in &headers {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    response
                }
            };
        let auth_body =
            "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-secret-key\"}}";
        let (url, _) = fake(status(StatusCode::UNAUTHORIZED, vec![], auth_body)).await;
        let error = provider(url).stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Auth {
                provider: "openai".into(),
                message: "Incorrect API key provided: [redacted]".into(),
            }
        );

        let (url, _) = fake(status(
            StatusCode::TOO_MANY_REQUESTS,
            vec![("retry-after", "2")],
            "{\"error\":{\"message\":\"slow down\"}}",
        ))
        .await;
        let error = provider(url).stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::RateLimited {
                provider: "openai".into(),
                retry_after: Some(Duration::from_secs(2)),
            }
        );

        let (url, _) = fake(status(
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            "{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}",
        ))
        .await;
        let error = provider(url).stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Server {
                provider: "openai".into(),
                status: 500,
                message: "The server had an error".into(),
            }
        );
        assert!(error.is_retryable());

        let (url, _) = fake(status(
            StatusCode::NOT_FOUND,
            vec![],
            "{\"error\":\"model \\\"x\\\" not found\"}",
        ))
        .await;
        let error = provider(url).stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::BadRequest {
                provider: "openai".into(),
                status: 404,
                message: "model \"x\" not found".into(),
            }
        );

        let (url, _) = fake(status(StatusCode::BAD_GATEWAY, vec![], "upstream down")).await;
        let error = provider(url).stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Server {
                provider: "openai".into(),
                status: 502,
                message: "upstream down".into(),
            }
        );
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_is_a_protocol_error() {
        // The body ends cleanly, but early.
        let (url, _) = fake(|| {
            sse(vec![
                format!("data: {}\n\n", text_chunk("Hel")).into_bytes(),
            ])
        })
        .await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(items[0], Ok(ProviderEvent::TextDelta("Hel".into())));
        assert!(
            matches!(&items[1], Err(ProviderError::Protocol { message, .. }) if message.contains("[DONE]")),
            "{items:?}"
        );
        assert_eq!(items.len(), 2);

        // The connection breaks mid-body.
        let (url, _) = fake(|| {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(format!("data: {}\n\n", text_chunk("Hel")))),
                Err(std::io::Error::other("cut")),
            ];
            let body = futures_util::stream::iter(chunks).then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                chunk
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response()
        })
        .await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(items[0], Ok(ProviderEvent::TextDelta("Hel".into())));
        assert!(
            matches!(items[1], Err(ProviderError::Protocol { .. })),
            "{items:?}"
        );
        assert_eq!(items.len(), 2);
    }

    #[tokio::test]
    async fn undecodable_json_is_a_protocol_error() {
        let (url, _) = fake(|| sse(vec![b"data: {\"choices\": [\n\n".to_vec()])).await;
        let items = collect(&provider(url), &request()).await;
        assert!(
            matches!(items[..], [Err(ProviderError::Protocol { .. })]),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn an_error_object_in_the_stream_is_an_error_item() {
        let body = events(&[
            text_chunk("Hel"),
            json!({"error":{"message":"upstream overloaded","code":502}}),
        ]);
        let (url, _) = fake(move || sse(body.clone())).await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(
            items,
            vec![
                Ok(ProviderEvent::TextDelta("Hel".into())),
                Err(ProviderError::Server {
                    provider: "openai".into(),
                    status: 502,
                    message: "upstream overloaded".into(),
                }),
            ]
        );
    }

    #[tokio::test]
    async fn a_utf8_character_split_across_network_chunks_survives() {
        let event = format!("data: {}\r\n\r\n", text_chunk("h€llo"));
        let bytes = event.into_bytes();
        // Split inside the three bytes of '€'.
        let split = bytes.iter().position(|&b| b == 0xE2).unwrap() + 1;
        let mut chunks = vec![bytes[..split].to_vec(), bytes[split..].to_vec()];
        chunks.push(
            format!(
                "data: {}\r\n\r\ndata: [DONE]\r\n\r\n",
                json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
            )
            .into_bytes(),
        );
        let (url, _) = fake(move || sse(chunks.clone())).await;
        let items = collect(&provider(url), &request()).await;
        assert_eq!(
            items,
            vec![
                Ok(ProviderEvent::TextDelta("h€llo".into())),
                Ok(ProviderEvent::Done {
                    usage: None,
                    finish_reason: FinishReason::Stop
                }),
            ]
        );
    }

    #[tokio::test]
    async fn finish_reason_without_done_still_completes() {
        let body = vec![
            format!("data: {}\n\n", text_chunk("hi")).into_bytes(),
            format!(
                "data: {}\n\n",
                json!({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]})
            )
            .into_bytes(),
        ];
        let (url, _) = fake(move || sse(body.clone())).await;
        let completion = provider(url).complete(&request()).await.unwrap();
        assert_eq!(completion.text, "hi");
        assert_eq!(completion.finish_reason, FinishReason::Length);
    }

    #[tokio::test]
    async fn connection_refused_is_connect_and_silence_is_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = provider(format!("http://{addr}/v1"))
            .stream(&request())
            .await
            .err()
            .unwrap();
        assert!(matches!(error, ProviderError::Connect { .. }), "{error:?}");
        assert!(!error.to_string().contains(KEY));

        let router = Router::new().route(
            "/v1/chat/completions",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let url = spawn(router).await;
        let provider = OpenAiProvider::new(OpenAiConfig {
            name: "local".into(),
            base_url: url,
            api_key: None,
            model: "m".into(),
            timeout: Duration::from_millis(100),
        })
        .unwrap();
        let error = provider.stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Timeout {
                provider: "local".into()
            }
        );
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let config = OpenAiConfig {
            name: "openai".into(),
            base_url: OpenAiConfig::DEFAULT_BASE_URL.into(),
            api_key: Some(KEY.into()),
            model: "m".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains(KEY));
        let provider = OpenAiProvider::new(config).unwrap();
        assert!(!format!("{provider:?}").contains(KEY));
        let error = OpenAiProvider::new(OpenAiConfig {
            name: "openai".into(),
            base_url: "not a url".into(),
            api_key: Some(KEY.into()),
            model: "m".into(),
            timeout: Duration::from_secs(1),
        })
        .err()
        .unwrap();
        assert!(matches!(error, ProviderError::Connect { .. }));
    }
}

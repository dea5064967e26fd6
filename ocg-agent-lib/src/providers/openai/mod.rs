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
//! What it shares with the other providers (the SSE stream driver, the
//! HTTP error classification) is in [`super::transport`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ocg_core::{Message, Role, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::transport::{self, Endpoint, EventParser, Item, SseEvent};
use super::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
    ToolSpec,
};

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
#[derive(Debug)]
pub struct OpenAiProvider {
    endpoint: Endpoint,
}

impl OpenAiProvider {
    /// Build the provider.
    ///
    /// Fails with [`ProviderError::Connect`] when `base_url` is not a URL or
    /// the HTTP client cannot be built, and with [`ProviderError::Auth`] when
    /// the API key cannot be sent in a header.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let key = config.api_key.filter(|key| !key.is_empty());
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &key {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                transport::secret_header(&config.name, &format!("Bearer {key}"))?,
            );
        }
        let endpoint = Endpoint::new(
            config.name,
            config.model,
            (&config.base_url, "chat/completions"),
            headers,
            config.timeout,
            key,
        )?;
        Ok(OpenAiProvider { endpoint })
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn model(&self) -> &str {
        &self.endpoint.model
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let tools = self.endpoint.tools_json(&request.tools, |list| {
            serde_json::value::to_raw_value(&list.iter().map(wire_tool).collect::<Vec<_>>())
        })?;
        let body = wire_request(request, &self.endpoint.model, tools.as_deref());
        let parser = ChunkParser::new(self.endpoint.name.clone());
        self.endpoint.stream(&body, parser).await
    }
}

// ---------------------------------------------------------------------------
// Request wire format.

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    /// The `[WireTool]` list, serialized once per tool list.
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a RawValue>,
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

fn wire_request<'a>(
    request: &'a CompletionRequest,
    default_model: &'a str,
    tools: Option<&'a RawValue>,
) -> WireRequest<'a> {
    WireRequest {
        model: request.model.as_deref().unwrap_or(default_model),
        messages: request.messages.iter().map(wire_message).collect(),
        tools,
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

/// The events of a `/chat/completions` stream body given as chunks, for the
/// fuzz targets.
#[cfg(fuzzing)]
pub(crate) fn parse_stream(chunks: Vec<Vec<u8>>) -> ProviderStream {
    transport::chunk_stream(chunks, "fuzz".into(), ChunkParser::new("fuzz".into()))
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

#[cfg(test)]
mod tests;

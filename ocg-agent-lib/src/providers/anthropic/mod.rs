//! Anthropic's Messages API (`/v1/messages`), natively and streamed.
//!
//! The conversation is reshaped to what the API requires: every system
//! message goes into the top-level `system` field; tool results become
//! `tool_result` blocks of a user message; and consecutive messages of the
//! same role are merged, because the API wants user and assistant turns to
//! alternate. Within a merged user message the `tool_result` blocks come
//! first, as the API also requires.
//!
//! The stream's events map onto [`ProviderEvent`]s: `text_delta`s become
//! [`ProviderEvent::TextDelta`]s, a `tool_use` block's `input_json_delta`
//! pieces are collected and emitted as one [`ToolCall`] at its
//! `content_block_stop`, and `message_stop` becomes the single
//! [`ProviderEvent::Done`], with usage from `message_start` (input, including
//! cache reads and writes) and `message_delta` (output). An `error` event is
//! an error item (`overloaded_error` is [`ProviderError::Server`] with status
//! 529); a body that ends before `message_stop` is a
//! [`ProviderError::Protocol`] item.
//!
//! The API key is only sent in the `x-api-key` header (marked sensitive) and
//! is redacted from `Debug` output and vendor error messages.

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

/// The API version this module speaks.
const API_VERSION: &str = "2023-06-01";

/// Settings of an [`AnthropicProvider`].
///
/// `Debug` prints the API key as `[redacted]`.
#[derive(Clone)]
pub struct AnthropicConfig {
    /// Short name for logs and errors (usually `anthropic`).
    pub name: String,
    /// The API root, [`AnthropicConfig::DEFAULT_BASE_URL`] unless proxied;
    /// requests go to `{base_url}/v1/messages`. Empty means the default.
    pub base_url: String,
    /// Sent as `x-api-key`.
    pub api_key: String,
    /// The model used when a request names none.
    pub model: String,
    /// Connect timeout, and the longest silence tolerated while waiting for
    /// the response headers or between two reads of the streamed body.
    pub timeout: Duration,
    /// `max_tokens` when a request sets none (the API requires one).
    pub max_tokens_default: u32,
}

impl AnthropicConfig {
    /// Anthropic's own API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";

    /// A configuration named `anthropic` for Anthropic's own API, with a
    /// 120 s timeout and a default cap of 4096 answer tokens.
    pub fn new(api_key: impl Into<String>, model: impl Into<String>) -> Self {
        AnthropicConfig {
            name: "anthropic".to_owned(),
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            model: model.into(),
            timeout: Duration::from_secs(120),
            max_tokens_default: 4096,
        }
    }
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens_default", &self.max_tokens_default)
            .finish()
    }
}

/// Anthropic's Messages API, streamed over SSE.
///
/// Cheap to share behind an `Arc`; the HTTP client pools connections.
#[derive(Debug)]
pub struct AnthropicProvider {
    endpoint: Endpoint,
    max_tokens_default: u32,
}

impl AnthropicProvider {
    /// Build the provider.
    ///
    /// Fails with [`ProviderError::Connect`] when `base_url` is not a URL or
    /// the HTTP client cannot be built, and with [`ProviderError::Auth`] when
    /// the API key cannot be sent in a header.
    pub fn new(config: AnthropicConfig) -> Result<Self, ProviderError> {
        let base_url = if config.base_url.trim().is_empty() {
            AnthropicConfig::DEFAULT_BASE_URL
        } else {
            &config.base_url
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-api-key",
            transport::secret_header(&config.name, &config.api_key)?,
        );
        headers.insert(
            "anthropic-version",
            reqwest::header::HeaderValue::from_static(API_VERSION),
        );
        let endpoint = Endpoint::new(
            config.name.clone(),
            config.model,
            (base_url, "v1/messages"),
            headers,
            config.timeout,
            Some(config.api_key),
        )?;
        Ok(AnthropicProvider {
            endpoint,
            max_tokens_default: config.max_tokens_default,
        })
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
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
        let body = wire_request(
            request,
            &self.endpoint.model,
            self.max_tokens_default,
            tools.as_deref(),
        );
        let parser = EventsParser::new(self.endpoint.name.clone());
        self.endpoint.stream(&body, parser).await
    }
}

// ---------------------------------------------------------------------------
// Request wire format.

#[derive(Debug, Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    /// The `[WireTool]` list, serialized once per tool list.
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        content: &'a str,
    },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: &'a Value,
}

fn wire_request<'a>(
    request: &'a CompletionRequest,
    default_model: &'a str,
    max_tokens_default: u32,
    tools: Option<&'a RawValue>,
) -> WireRequest<'a> {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|message| message.role == Role::System && !message.content.is_empty())
        .map(|message| message.content.as_str())
        .collect();
    WireRequest {
        model: request.model.as_deref().unwrap_or(default_model),
        max_tokens: request.max_tokens.unwrap_or(max_tokens_default),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: wire_messages(&request.messages),
        tools,
        temperature: request.temperature,
        stream: true,
    }
}

/// The non-system messages as alternating user/assistant content blocks.
fn wire_messages(messages: &[Message]) -> Vec<WireMessage<'_>> {
    let mut out: Vec<WireMessage<'_>> = Vec::new();
    for message in messages {
        let (role, blocks) = match message.role {
            Role::System => continue,
            Role::User => ("user", text_block(&message.content)),
            Role::Assistant => {
                let mut blocks = text_block(&message.content);
                blocks.extend(message.tool_calls.iter().map(|call| Block::ToolUse {
                    id: &call.id,
                    name: &call.name,
                    input: tool_input(&call.arguments),
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![Block::ToolResult {
                    tool_use_id: message.tool_call_id.as_deref().unwrap_or_default(),
                    content: &message.content,
                }],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(WireMessage {
                role,
                content: blocks,
            }),
        }
    }
    for message in &mut out {
        // The API wants a user message's tool results before its text.
        message
            .content
            .sort_by_key(|block| !matches!(block, Block::ToolResult { .. }));
    }
    out
}

/// A text block, or none for empty text (the API rejects empty blocks).
fn text_block(text: &str) -> Vec<Block<'_>> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Block::Text { text }]
    }
}

/// `tool_use.input` must be an object: raw text kept from an invalid call
/// is parsed if it is an object after all, and replaced by `{}` otherwise
/// (the tool's result already told the model what went wrong).
fn tool_input(arguments: &Value) -> Value {
    match arguments {
        Value::Object(_) => arguments.clone(),
        Value::String(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => Value::Object(serde_json::Map::new()),
        },
        _ => Value::Object(serde_json::Map::new()),
    }
}

fn wire_tool(tool: &ToolSpec) -> WireTool<'_> {
    WireTool {
        name: &tool.name,
        description: &tool.description,
        input_schema: &tool.parameters,
    }
}

// ---------------------------------------------------------------------------
// Stream wire format.

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: MessageStart,
    },
    ContentBlockStart {
        index: usize,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        #[serde(default)]
        delta: Option<MessageDelta>,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    /// Event types added after this code was written are ignored, as the
    /// API's versioning policy asks.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tools, …: not surfaced.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    cache_read_input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// A `tool_use` block being assembled.
#[derive(Debug)]
struct ToolUse {
    id: String,
    name: String,
    /// `input` from `content_block_start`, used when no delta follows.
    input: Value,
    json: String,
}

/// Turns Messages API stream events into [`ProviderEvent`]s.
#[derive(Debug)]
struct EventsParser {
    provider: String,
    tool_uses: BTreeMap<usize, ToolUse>,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    stop_reason: Option<String>,
}

/// The events of a Messages stream body given as chunks, for the fuzz
/// targets.
#[cfg(fuzzing)]
pub(crate) fn parse_stream(chunks: Vec<Vec<u8>>) -> super::ProviderStream {
    transport::chunk_stream(chunks, "fuzz".into(), EventsParser::new("fuzz".into()))
}

impl EventsParser {
    fn new(provider: String) -> Self {
        EventsParser {
            provider,
            tool_uses: BTreeMap::new(),
            input_tokens: None,
            output_tokens: None,
            stop_reason: None,
        }
    }

    fn add_usage(&mut self, usage: WireUsage) {
        if usage.input_tokens.is_some()
            || usage.cache_creation_input_tokens.is_some()
            || usage.cache_read_input_tokens.is_some()
        {
            let input = [
                usage.input_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            ]
            .into_iter()
            .flatten()
            .fold(0u32, u32::saturating_add);
            self.input_tokens = Some(input);
        }
        if let Some(output) = usage.output_tokens {
            self.output_tokens = Some(output);
        }
    }

    fn tool_call(tool_use: ToolUse) -> Item {
        let arguments = if tool_use.json.trim().is_empty() && tool_use.input.is_object() {
            tool_use.input
        } else {
            transport::parse_arguments(tool_use.json)
        };
        Ok(ProviderEvent::ToolCall(ToolCall {
            id: tool_use.id,
            name: tool_use.name,
            arguments,
        }))
    }

    fn error(&self, error: WireError) -> ProviderError {
        let provider = self.provider.clone();
        let message = if error.message.is_empty() {
            error.kind.clone()
        } else {
            error.message
        };
        let status = match error.kind.as_str() {
            "rate_limit_error" => 429,
            "authentication_error" => 401,
            "permission_error" => 403,
            "invalid_request_error" => 400,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "overloaded_error" => 529,
            "timeout_error" => 504,
            _ => 500,
        };
        transport::classify(&provider, status, message, None)
    }
}

impl EventParser for EventsParser {
    fn on_event(&mut self, event: SseEvent, out: &mut VecDeque<Item>) {
        let event: StreamEvent = match serde_json::from_str(&event.data) {
            Ok(event) => event,
            Err(error) => {
                out.push_back(Err(ProviderError::Protocol {
                    provider: self.provider.clone(),
                    message: format!("undecodable stream event: {error}"),
                }));
                return;
            }
        };
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.add_usage(usage);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::Text { text } if !text.is_empty() => {
                    out.push_back(Ok(ProviderEvent::TextDelta(text)));
                }
                ContentBlock::ToolUse { id, name, input } => {
                    self.tool_uses.insert(
                        index,
                        ToolUse {
                            id,
                            name,
                            input,
                            json: String::new(),
                        },
                    );
                }
                ContentBlock::Text { .. } | ContentBlock::Other => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    out.push_back(Ok(ProviderEvent::TextDelta(text)));
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    match self.tool_uses.get_mut(&index) {
                        Some(tool_use) => tool_use.json.push_str(&partial_json),
                        None => out.push_back(Err(ProviderError::Protocol {
                            provider: self.provider.clone(),
                            message: format!("input_json_delta for block {index}, not a tool_use"),
                        })),
                    }
                }
                BlockDelta::TextDelta { .. } | BlockDelta::Other => {}
            },
            StreamEvent::ContentBlockStop { index } => {
                if let Some(tool_use) = self.tool_uses.remove(&index) {
                    out.push_back(Self::tool_call(tool_use));
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.and_then(|delta| delta.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(usage) = usage {
                    self.add_usage(usage);
                }
            }
            StreamEvent::MessageStop => {
                // Blocks never closed still count: they are complete by now.
                for (_, tool_use) in std::mem::take(&mut self.tool_uses) {
                    out.push_back(Self::tool_call(tool_use));
                }
                let usage =
                    (self.input_tokens.is_some() || self.output_tokens.is_some()).then(|| {
                        let prompt = self.input_tokens.unwrap_or_default();
                        let completion = self.output_tokens.unwrap_or_default();
                        Usage {
                            prompt_tokens: prompt,
                            completion_tokens: completion,
                            total_tokens: prompt.saturating_add(completion),
                        }
                    });
                out.push_back(Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: stop_reason(self.stop_reason.as_deref()),
                }));
            }
            StreamEvent::Error { error } => out.push_back(Err(self.error(error))),
            StreamEvent::Ping | StreamEvent::Unknown => {}
        }
    }

    fn on_end(&mut self, out: &mut VecDeque<Item>) {
        out.push_back(Err(ProviderError::Protocol {
            provider: self.provider.clone(),
            message: "the stream ended before message_stop".to_owned(),
        }));
    }
}

fn stop_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests;

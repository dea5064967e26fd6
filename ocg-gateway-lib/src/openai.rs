//! The OpenAI-compatible API: `POST /v1/chat/completions`, `GET /v1/models`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use ocg_core::{ChatEvent, ChatRequest, Message, Role, Usage};
use serde::Deserialize;

use crate::ApiError;
use crate::routes::{AppState, JsonBody};

/// The request body; every field OpenAI documents is accepted, anything
/// else is a 400 naming the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Accepted for compatibility; the agent decides these.
pub(crate) struct CompletionRequest {
    model: Option<String>,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    user: Option<String>,
    tools: Option<serde_json::Value>,
    tool_choice: Option<serde_json::Value>,
    parallel_tool_calls: Option<bool>,
    n: Option<u32>,
    top_p: Option<f32>,
    stop: Option<serde_json::Value>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    seed: Option<i64>,
    response_format: Option<serde_json::Value>,
    logit_bias: Option<serde_json::Value>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    metadata: Option<serde_json::Value>,
    store: Option<bool>,
    reasoning_effort: Option<String>,
    service_tier: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    tool_calls: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn to_message(wire: WireMessage) -> Result<Message, ApiError> {
    let role = match wire.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => return Err(bad(format!("unknown role {other:?}"))),
    };
    let content = match wire.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(&t);
                    }
                    (kind, _) => {
                        return Err(bad(format!(
                            "content parts of type {kind:?} are not supported; send text"
                        )));
                    }
                }
            }
            text
        }
    };
    let mut message = Message::new(role, content);
    message.tool_call_id = wire.tool_call_id;
    Ok(message)
}

/// Turn the OpenAI request into an agent request. A named session (header
/// `X-OCG-Session`, else the `user` field) continues `api:<name>` with the
/// last user message; otherwise the whole conversation is a stateless turn.
pub(crate) fn to_agent_request(
    body: CompletionRequest,
    headers: &HeaderMap,
) -> Result<(ChatRequest, bool, bool), ApiError> {
    if body.n.is_some_and(|n| n != 1) {
        return Err(bad("only n = 1 is supported"));
    }
    let session = headers
        .get("x-ocg-session")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(body.user.clone())
        .filter(|s| !s.trim().is_empty());
    let mut messages = body
        .messages
        .into_iter()
        .map(to_message)
        .collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let session_key = match session {
        Some(name) => {
            let last_user = messages
                .iter()
                .rposition(|m| m.role == Role::User)
                .ok_or_else(|| bad("a session turn needs a user message"))?;
            messages = vec![messages.swap_remove(last_user)];
            Some(format!("api:{name}"))
        }
        None => None,
    };
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    Ok((
        ChatRequest {
            session_key,
            messages,
            model: None,
            temperature: body.temperature,
            max_tokens: body.max_completion_tokens.or(body.max_tokens),
        },
        body.stream,
        include_usage,
    ))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    format!(
        "chatcmpl-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn usage_json(usage: Option<Usage>) -> serde_json::Value {
    let usage = usage.unwrap_or_default();
    serde_json::json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    let model = match body.model.clone() {
        Some(model) => model,
        None => state.model().await,
    };
    let (request, stream, include_usage) = to_agent_request(body, &headers)?;
    let id = completion_id();
    let created = now_secs();
    let events = state.agent.chat_stream(request).await?;

    if !stream {
        let mut events = events;
        while let Some(event) = events.next().await {
            match event {
                ChatEvent::Done { message, usage, .. } => {
                    return Ok(Json(serde_json::json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": message.content},
                            "finish_reason": "stop",
                        }],
                        "usage": usage_json(usage),
                    }))
                    .into_response());
                }
                ChatEvent::Error { code, message } => {
                    return Err(ocg_core::Error::Remote { code, message }.into());
                }
                _ => {}
            }
        }
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "unavailable",
            "the agent ended the turn without an answer",
        ));
    }

    let chunk: Arc<Chunker> = Arc::new(move |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    });
    let first = chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        None,
    );
    let body = async_stream(events, chunk, include_usage);
    let events =
        futures_util::stream::once(async move { Ok(Event::default().data(first.to_string())) })
            .chain(body);
    Ok(Sse::new(events).into_response())
}

type Chunker = dyn Fn(serde_json::Value, Option<&str>) -> serde_json::Value + Send + Sync;

/// The SSE frames for one agent event (`None`: the stream broke off).
fn frames_for(
    event: Option<ChatEvent>,
    chunk: &Chunker,
    include_usage: bool,
    ended: &mut bool,
) -> Vec<String> {
    match event {
        Some(ChatEvent::Delta { text }) => {
            vec![chunk(serde_json::json!({"content": text}), None).to_string()]
        }
        Some(ChatEvent::Done { usage, .. }) => {
            *ended = true;
            let mut frames = vec![chunk(serde_json::json!({}), Some("stop")).to_string()];
            if include_usage {
                let mut last = chunk(serde_json::json!({}), None);
                last["choices"] = serde_json::json!([]);
                last["usage"] = usage_json(usage);
                frames.push(last.to_string());
            }
            frames.push("[DONE]".to_owned());
            frames
        }
        Some(ChatEvent::Error { code, message }) => {
            *ended = true;
            vec![
                ApiError::from(ocg_core::Error::Remote { code, message })
                    .body()
                    .to_string(),
            ]
        }
        Some(_) => Vec::new(),
        None => {
            *ended = true;
            let error = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "unavailable",
                "the agent's stream ended early",
            );
            vec![error.body().to_string()]
        }
    }
}

/// Map agent events to OpenAI chunks, ending with `[DONE]`, or with an
/// error object when the turn fails or the agent's stream breaks off (never
/// silently).
fn async_stream(
    events: ocg_core::ChatStream,
    chunk: Arc<Chunker>,
    include_usage: bool,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    let pending: VecDeque<String> = VecDeque::new();
    futures_util::stream::unfold(
        (events, pending, false),
        move |(mut events, mut pending, mut ended)| {
            let chunk = chunk.clone();
            async move {
                loop {
                    if let Some(frame) = pending.pop_front() {
                        return Some((Ok(Event::default().data(frame)), (events, pending, ended)));
                    }
                    if ended {
                        return None;
                    }
                    let event = events.next().await;
                    pending.extend(frames_for(event, &*chunk, include_usage, &mut ended));
                }
            }
        },
    )
}

/// `GET /v1/models`.
pub(crate) async fn models(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let created = now_secs();
    let data: Vec<serde_json::Value> = state
        .agent
        .models()
        .await?
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": created, "owned_by": "ocg"}))
        .collect();
    Ok(Json(serde_json::json!({"object": "list", "data": data})))
}

//! A fake OpenAI-compatible chat server and a fake Anthropic server, scripted
//! per request, on 127.0.0.1.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

/// What the fake does for one request.
#[derive(Debug, Clone)]
pub enum Script {
    /// Stream this text in a few chunks, then finish.
    Text(String),
    /// Stream `first`, then hang for `hold` before finishing with `rest`.
    Slow {
        first: String,
        hold: Duration,
        rest: String,
    },
    /// Answer with this status and error message.
    Fail(u16, String),
    /// Call these tools (name, JSON arguments), then finish with
    /// `tool_calls` (OpenAI only).
    Tools(Vec<(String, serde_json::Value)>),
}

#[derive(Debug, Default)]
struct Shared {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<serde_json::Value>>,
}

/// A running fake vendor.
#[derive(Debug, Clone)]
pub struct FakeLlm {
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeLlm {
    /// Queue a script for the next request (without scripts, it echoes).
    pub fn push(&self, script: Script) {
        self.shared.scripts.lock().unwrap().push_back(script);
    }

    /// Drop the scripts not used yet (it echoes again).
    pub fn clear_scripts(&self) {
        self.shared.scripts.lock().unwrap().clear();
    }

    /// The JSON bodies received so far.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.shared.requests.lock().unwrap().clone()
    }
}

/// Start a fake OpenAI-compatible server on its own runtime thread;
/// `base_url` ends in `/v1`.
pub fn start_openai() -> FakeLlm {
    start(
        Router::new().route("/v1/chat/completions", post(openai)),
        "/v1",
    )
}

/// Start a fake Anthropic Messages server; `base_url` is the host root.
pub fn start_anthropic() -> FakeLlm {
    start(Router::new().route("/v1/messages", post(anthropic)), "")
}

fn start(router: Router<Arc<Shared>>, suffix: &str) -> FakeLlm {
    let shared = Arc::new(Shared::default());
    let addr = crate::serve_on_own_thread(router.with_state(shared.clone()));
    FakeLlm {
        base_url: format!("http://{addr}{suffix}"),
        shared,
    }
}

fn next_script(shared: &Shared, body: &serde_json::Value) -> Script {
    shared.requests.lock().unwrap().push(body.clone());
    shared
        .scripts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| {
            let last = body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .map(|m| match &m["content"] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other[0]["text"].as_str().unwrap_or_default().to_owned(),
                })
                .unwrap_or_default();
            Script::Text(format!("echo: {last}"))
        })
}

fn sse(events: Vec<(Duration, String)>) -> Response {
    let stream = futures_util::stream::unfold(events.into_iter(), |mut events| async move {
        let (wait, data) = events.next()?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some((Ok::<_, Infallible>(Bytes::from(data)), events))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn chunks(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if current.len() >= 6 {
            parts.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let delta = |text: &str| {
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
        )
    };
    let finish = || {
        vec![
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})
            ),
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}})
            ),
            "data: [DONE]\n\n".to_owned(),
        ]
    };
    match next_script(&shared, &body) {
        Script::Fail(status, message) => (
            StatusCode::from_u16(status).unwrap(),
            Json(serde_json::json!({"error":{"message":message,"type":"error"}})),
        )
            .into_response(),
        Script::Text(text) => {
            let mut events: Vec<(Duration, String)> = chunks(&text)
                .iter()
                .map(|c| (Duration::ZERO, delta(c)))
                .collect();
            events.extend(finish().into_iter().map(|e| (Duration::ZERO, e)));
            sse(events)
        }
        Script::Slow { first, hold, rest } => {
            let mut events = vec![(Duration::ZERO, delta(&first)), (hold, delta(&rest))];
            events.extend(finish().into_iter().map(|e| (Duration::ZERO, e)));
            sse(events)
        }
        Script::Tools(calls) => {
            let mut events: Vec<(Duration, String)> = calls
                .iter()
                .enumerate()
                .map(|(index, (name, arguments))| {
                    let call = serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{
                        "index": index,
                        "id": format!("call_{index}"),
                        "type": "function",
                        "function": {"name": name, "arguments": arguments.to_string()}
                    }]},"finish_reason":null}]});
                    (Duration::ZERO, format!("data: {call}\n\n"))
                })
                .collect();
            let done = serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]});
            events.push((Duration::ZERO, format!("data: {done}\n\n")));
            events.push((Duration::ZERO, "data: [DONE]\n\n".to_owned()));
            sse(events)
        }
    }
}

async fn anthropic(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    match next_script(&shared, &body) {
        Script::Fail(status, message) => (
            StatusCode::from_u16(status).unwrap(),
            Json(
                serde_json::json!({"type":"error","error":{"type":"api_error","message":message}}),
            ),
        )
            .into_response(),
        Script::Tools(_) => (
            StatusCode::NOT_IMPLEMENTED,
            Json(serde_json::json!({"type":"error","error":{"type":"api_error","message":"tool scripts are OpenAI-only here"}})),
        )
            .into_response(),
        Script::Text(text) | Script::Slow { rest: text, .. } => {
            let mut events = vec![
                event(
                    "message_start",
                    serde_json::json!({"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}),
                ),
                event(
                    "content_block_start",
                    serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                ),
            ];
            for chunk in chunks(&text) {
                events.push(event(
                    "content_block_delta",
                    serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":chunk}}),
                ));
            }
            events.push(event(
                "content_block_stop",
                serde_json::json!({"type":"content_block_stop","index":0}),
            ));
            events.push(event("message_delta", serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}})));
            events.push(event(
                "message_stop",
                serde_json::json!({"type":"message_stop"}),
            ));
            sse(events.into_iter().map(|e| (Duration::ZERO, e)).collect())
        }
    }
}

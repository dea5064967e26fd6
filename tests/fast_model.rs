//! The benchmarks' model: an OpenAI-compatible `/v1/chat/completions` that
//! answers at once, streamed or not, with usage, and keeps nothing.
//!
//! Unlike [`crate::fake_llm`] (scripted, and recording every request for the
//! tests to inspect) it does only what a model server must: read the request,
//! check it is JSON with messages, and answer the same short text. So a
//! benchmark's baseline ("the model alone") is as fast as this machine
//! allows, and a ratio against it measures OCG, not the fake.

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

/// The answer, in the pieces it is streamed in.
pub const ANSWER: [&str; 3] = ["Hello", " from the", " fast model."];

/// A running fast model server.
#[derive(Debug, Clone)]
pub struct FastModel {
    /// Its API root, ending in `/v1`.
    pub base_url: String,
}

impl FastModel {
    /// Start it on 127.0.0.1 on a thread of its own.
    pub fn start() -> Self {
        let app = Router::new().route("/v1/chat/completions", post(complete));
        let addr = crate::serve_on_own_thread(app);
        FastModel {
            base_url: format!("http://{addr}/v1"),
        }
    }
}

/// The fields the fake looks at; the rest of the body is only checked to be
/// well-formed JSON.
#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    stream: bool,
    messages: Vec<serde::de::IgnoredAny>,
}

async fn complete(body: Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let body = serde_json::json!({"error": {"message": error.to_string(), "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let prompt_tokens = request.messages.len() * 8;
    let usage = format!(
        r#"{{"prompt_tokens":{prompt_tokens},"completion_tokens":{},"total_tokens":{}}}"#,
        ANSWER.len(),
        prompt_tokens + ANSWER.len()
    );
    if !request.stream {
        let body = format!(
            r#"{{"id":"fast-1","object":"chat.completion","created":0,"model":"fast","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{usage}}}"#,
            ANSWER.concat()
        );
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let mut body = String::with_capacity(1024);
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"fast-1","object":"chat.completion.chunk","created":0,"model":"fast","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        ) + "\n\n"
    };
    body.push_str(&chunk(r#"{"role":"assistant","content":""}"#, "null"));
    for piece in ANSWER {
        body.push_str(&chunk(&format!(r#"{{"content":"{piece}"}}"#), "null"));
    }
    body.push_str(&chunk("{}", r#""stop""#));
    body.push_str(&format!(
        "data: {{\"id\":\"fast-1\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"fast\",\"choices\":[],\"usage\":{usage}}}\n\ndata: [DONE]\n\n"
    ));
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

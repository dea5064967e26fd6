use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::providers::fake_vendor::{self, Seen};

const KEY: &str = "sk-ant-test-secret";

/// A fake `/v1/messages` answering every request with `respond()`,
/// recording what it received; its root URL.
async fn fake<F>(respond: F) -> (String, Seen)
where
    F: Fn() -> Response + Clone + Send + Sync + 'static,
{
    fake_vendor::fake_vendor("/v1/messages", respond).await
}

/// An SSE response of `events` (JSON with a `type`), each its own write.
fn sse(events: Vec<Value>) -> Response {
    let body = futures_util::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        Ok::<_, Infallible>(Bytes::from(format!("event: {kind}\ndata: {event}\n\n")))
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

fn provider(base_url: String) -> AnthropicProvider {
    AnthropicProvider::new(AnthropicConfig {
        base_url,
        timeout: Duration::from_secs(5),
        ..AnthropicConfig::new(KEY, "claude-test")
    })
    .unwrap()
}

async fn collect(provider: &AnthropicProvider, request: &CompletionRequest) -> Vec<Item> {
    match provider.stream(request).await {
        Ok(stream) => stream.collect().await,
        Err(error) => vec![Err(error)],
    }
}

fn message_start(input_tokens: u32) -> Value {
    json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",
        "content":[],"model":"claude-test","stop_reason":null,
        "usage":{"input_tokens":input_tokens,"output_tokens":1}}})
}

fn text_delta(index: usize, text: &str) -> Value {
    json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":text}})
}

fn json_delta(index: usize, partial: &str) -> Value {
    json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":partial}})
}

#[tokio::test]
async fn streams_text_and_tool_use() {
    let events = vec![
        message_start(25),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        json!({"type":"ping"}),
        text_delta(0, "Let me "),
        text_delta(0, "check."),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}),
        json_delta(1, ""),
        json_delta(1, "{\"city\": "),
        json_delta(1, "\"Par"),
        json_delta(1, "is\"}"),
        json!({"type":"content_block_stop","index":1}),
        json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}),
        json!({"type":"content_block_stop","index":2}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}),
        json!({"type":"message_stop"}),
    ];
    let (url, seen) = fake(move || sse(events.clone())).await;
    let request = CompletionRequest {
        messages: vec![Message::user("weather?")],
        ..Default::default()
    };
    let items = collect(&provider(url), &request).await;
    assert_eq!(
        items,
        vec![
            Ok(ProviderEvent::TextDelta("Let me ".into())),
            Ok(ProviderEvent::TextDelta("check.".into())),
            Ok(ProviderEvent::ToolCall(ToolCall {
                id: "toolu_1".into(),
                name: "weather".into(),
                arguments: json!({"city": "Paris"}),
            })),
            Ok(ProviderEvent::ToolCall(ToolCall {
                id: "toolu_2".into(),
                name: "now".into(),
                arguments: json!({}),
            })),
            Ok(ProviderEvent::Done {
                usage: Some(Usage {
                    prompt_tokens: 25,
                    completion_tokens: 40,
                    total_tokens: 65
                }),
                finish_reason: FinishReason::ToolCalls,
            }),
        ]
    );
    let seen = seen.lock().unwrap();
    let (headers, body) = &seen[0];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert!(headers.get("authorization").is_none());
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn places_system_and_maps_tool_results() {
    let events = vec![
        message_start(3),
        text_delta(0, "ok"),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}),
        json!({"type":"message_stop"}),
    ];
    let (url, seen) = fake(move || sse(events.clone())).await;
    let mut assistant = Message::assistant("Checking.");
    assistant.tool_calls = vec![
        ToolCall {
            id: "toolu_1".into(),
            name: "weather".into(),
            arguments: json!({"city": "Paris"}),
        },
        ToolCall {
            id: "toolu_2".into(),
            name: "broken".into(),
            arguments: Value::String("{oops".into()),
        },
    ];
    let tool_result = |id: &str, content: &str| {
        let mut message = Message::new(Role::Tool, content);
        message.tool_call_id = Some(id.into());
        message
    };
    let request = CompletionRequest {
        messages: vec![
            Message::system("You are terse."),
            Message::system("Answer in French."),
            Message::user("Weather?"),
            Message::user("In Paris."),
            assistant,
            tool_result("toolu_1", "sunny"),
            tool_result("toolu_2", "error: invalid arguments"),
            Message::user("Thanks"),
        ],
        tools: std::sync::Arc::new([ToolSpec {
            name: "weather".into(),
            description: "Weather in a city".into(),
            parameters: json!({"type":"object"}),
        }]),
        model: Some("claude-other".into()),
        max_tokens: Some(300),
        temperature: Some(0.25),
    };
    let items = collect(&provider(url), &request).await;
    assert_eq!(items[0], Ok(ProviderEvent::TextDelta("ok".into())));
    assert!(matches!(
        items[1],
        Ok(ProviderEvent::Done {
            finish_reason: FinishReason::Stop,
            ..
        })
    ));
    let body = &seen.lock().unwrap()[0].1;
    assert_eq!(
        body,
        &json!({
            "model": "claude-other",
            "max_tokens": 300,
            "system": "You are terse.\n\nAnswer in French.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "text", "text": "In Paris."}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "broken", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "error: invalid arguments"},
                    {"type": "text", "text": "Thanks"}
                ]}
            ],
            "tools": [{"name": "weather", "description": "Weather in a city", "input_schema": {"type": "object"}}],
            "temperature": 0.25,
            "stream": true
        })
    );
}

#[tokio::test]
async fn an_error_event_is_an_error_item() {
    let events = vec![
        message_start(3),
        text_delta(0, "Hi"),
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    ];
    let (url, _) = fake(move || sse(events.clone())).await;
    let request = CompletionRequest {
        messages: vec![Message::user("hi")],
        ..Default::default()
    };
    let items = collect(&provider(url), &request).await;
    assert_eq!(
        items,
        vec![
            Ok(ProviderEvent::TextDelta("Hi".into())),
            Err(ProviderError::Server {
                provider: "anthropic".into(),
                status: 529,
                message: "Overloaded".into(),
            }),
        ]
    );
}

#[tokio::test]
async fn ending_before_message_stop_is_a_protocol_error() {
    let events = vec![message_start(3), text_delta(0, "Hi")];
    let (url, _) = fake(move || sse(events.clone())).await;
    let request = CompletionRequest {
        messages: vec![Message::user("hi")],
        ..Default::default()
    };
    let items = collect(&provider(url), &request).await;
    assert_eq!(items[0], Ok(ProviderEvent::TextDelta("Hi".into())));
    assert!(matches!(items[1], Err(ProviderError::Protocol { .. })));
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn classifies_http_errors() {
    let request = CompletionRequest {
        messages: vec![Message::user("hi")],
        ..Default::default()
    };
    let reply = |status: StatusCode, kind: &'static str, message: &'static str| {
        move || {
            let body = json!({"type":"error","error":{"type":kind,"message":message}});
            let mut response = (status, body.to_string()).into_response();
            response
                .headers_mut()
                .insert("retry-after", "3".parse().unwrap());
            response
        }
    };

    let (url, _) = fake(reply(
        StatusCode::from_u16(529).unwrap(),
        "overloaded_error",
        "Overloaded",
    ))
    .await;
    assert_eq!(
        provider(url).stream(&request).await.err().unwrap(),
        ProviderError::Server {
            provider: "anthropic".into(),
            status: 529,
            message: "Overloaded".into(),
        }
    );

    let (url, _) = fake(reply(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid x-api-key",
    ))
    .await;
    assert_eq!(
        provider(url).stream(&request).await.err().unwrap(),
        ProviderError::Auth {
            provider: "anthropic".into(),
            message: "invalid x-api-key".into(),
        }
    );

    let (url, _) = fake(reply(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "slow down",
    ))
    .await;
    assert_eq!(
        provider(url).stream(&request).await.err().unwrap(),
        ProviderError::RateLimited {
            provider: "anthropic".into(),
            retry_after: Some(Duration::from_secs(3)),
        }
    );

    let (url, _) = fake(reply(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "messages: roles must alternate",
    ))
    .await;
    assert_eq!(
        provider(url).stream(&request).await.err().unwrap(),
        ProviderError::BadRequest {
            provider: "anthropic".into(),
            status: 400,
            message: "messages: roles must alternate".into(),
        }
    );
}

#[test]
fn the_key_never_shows_in_debug_output() {
    let config = AnthropicConfig::new(KEY, "claude-test");
    assert!(!format!("{config:?}").contains(KEY));
    let provider = AnthropicProvider::new(config).unwrap();
    let debug = format!("{provider:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(
        debug.contains("https://api.anthropic.com/v1/messages"),
        "{debug}"
    );
}

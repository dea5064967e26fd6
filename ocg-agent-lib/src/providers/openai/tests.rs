use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::json;

use super::*;
use crate::providers::fake_vendor::{self, Seen};

const KEY: &str = "sk-test-secret-key";

/// `router` served; its `/v1` base URL.
async fn spawn(router: Router) -> String {
    format!("{}/v1", fake_vendor::serve(router).await)
}

/// A fake `/v1/chat/completions` answering every request with `respond()`,
/// recording what it received; its `/v1` base URL.
async fn fake<F>(respond: F) -> (String, Seen)
where
    F: Fn() -> Response + Clone + Send + Sync + 'static,
{
    let (root, seen) = fake_vendor::fake_vendor("/v1/chat/completions", respond).await;
    (format!("{root}/v1"), seen)
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
        tools: std::sync::Arc::new([ToolSpec {
            name: "weather".into(),
            description: "Weather in a city".into(),
            parameters: json!({"type":"object","properties":{"city":{"type":"string"}}}),
        }]),
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
    let auth_body = "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-secret-key\"}}";
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

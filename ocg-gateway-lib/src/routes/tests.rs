use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ocg_core::testing::ScriptedAgent;
use ocg_core::{ChatEvent, Message};
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "test-token";

struct DeadAgent;

#[async_trait::async_trait]
impl Agent for DeadAgent {
    async fn chat_stream(
        &self,
        _: ocg_core::ChatRequest,
    ) -> ocg_core::Result<ocg_core::ChatStream> {
        Err(ocg_core::Error::unavailable("agent", "connection refused"))
    }
    async fn health(&self) -> HealthReport {
        HealthReport {
            service: "agent".into(),
            status: HealthStatus::Unhealthy,
            version: String::new(),
            pid: 0,
            uptime_secs: 0,
            checks: vec![HealthCheck::failing("socket", "connection refused")],
        }
    }
}

fn app(agent: Arc<dyn Agent>) -> Router {
    router(GatewayState::new(agent, TOKEN.into()).with_hooks("hook-token".into()))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn post(uri: &str, body: impl Into<Body>) -> axum::http::request::Builder {
    let _ = body;
    Request::post(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
}

fn authed_post(uri: &str, body: &str) -> Request<Body> {
    post(uri, ()).body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn everything_but_health_ui_and_login_needs_the_token() {
    let app = app(Arc::new(ScriptedAgent::new()));
    for uri in ["/health", "/", "/assets/app.js", "/assets/style.css"] {
        let (status, headers, _) = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        if uri != "/health" {
            assert!(
                headers[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("script-src 'self'")
            );
        }
    }
    for uri in ["/api/me", "/api/status", "/api/sessions", "/v1/models"] {
        let (status, _, body) = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body.contains(r#""code":"unauthorized""#), "{body}");
    }
    let with_header = Request::get("/api/me")
        .header("x-ocg-ui-token", TOKEN)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, with_header).await.0, StatusCode::OK);
    // A token in the URL is not a credential.
    let in_url = Request::get(format!("/api/me?token={TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, in_url).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_sets_an_httponly_cookie_that_opens_the_api() {
    let app = app(Arc::new(ScriptedAgent::new()));
    let wrong = Request::post("/login")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"token":"nope"}"#))
        .unwrap();
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = Request::post("/login")
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"token":"{TOKEN}"}}"#)))
        .unwrap();
    let (status, headers, _) = send(&app, right).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let me = Request::get("/api/me")
        .header("cookie", pair)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, me).await.0, StatusCode::OK);
}

#[tokio::test]
async fn chat_completions_in_openai_shapes() {
    let app = app(Arc::new(ScriptedAgent::new()));
    let (status, _, body) = send(
        &app,
        authed_post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
               {"role":"user","content":[{"type":"text","text":"hello"}]}]}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["object"], "chat.completion");
    assert_eq!(value["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(value["choices"][0]["finish_reason"], "stop");

    let (status, headers, body) = send(
        &app,
        authed_post(
            "/v1/chat/completions",
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},
               "messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "echo: hi");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[3]["usage"]["total_tokens"].as_u64().is_some());
}

#[tokio::test]
async fn a_named_session_sends_only_the_new_message() {
    let agent = Arc::new(ScriptedAgent::new());
    let app = app(agent.clone());
    let request = post("/v1/chat/completions", ())
        .header("x-ocg-session", "alice")
        .body(Body::from(
            r#"{"messages":[{"role":"user","content":"old"},{"role":"assistant","content":"a"},{"role":"user","content":"new"}]}"#,
        ))
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    let seen = &agent.requests()[0];
    assert_eq!(seen.session_key.as_deref(), Some("api:alice"));
    assert_eq!(seen.messages, vec![Message::user("new")]);
}

#[tokio::test]
async fn a_failed_turn_ends_the_stream_with_an_error_not_silently() {
    let agent = Arc::new(ScriptedAgent::new());
    agent.push_script(vec![
        ChatEvent::Delta { text: "par".into() },
        ChatEvent::Error {
            code: "llm_server_error".into(),
            message: "boom".into(),
        },
    ]);
    let app = app(agent);
    let (_, _, body) = send(
        &app,
        authed_post(
            "/v1/chat/completions",
            r#"{"stream":true,"messages":[{"role":"user","content":"x"}]}"#,
        ),
    )
    .await;
    assert!(!body.contains("[DONE]"), "{body}");
    assert!(body.contains(r#""code":"llm_server_error""#), "{body}");
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_a_code() {
    let app = app(Arc::new(ScriptedAgent::new()));
    for (body, status) in [
        ("{oops", StatusCode::BAD_REQUEST),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"bogus":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"messages":[]}"#, StatusCode::BAD_REQUEST),
    ] {
        let (got, _, answer) = send(&app, authed_post("/v1/chat/completions", body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(
            value["error"]["code"].is_string() && value["error"]["type"].is_string(),
            "{answer}"
        );
    }
    let invalid_utf8 = post("/v1/chat/completions", ())
        .body(Body::from(vec![b'{', 0xff, b'}']))
        .unwrap();
    assert_eq!(send(&app, invalid_utf8).await.0, StatusCode::BAD_REQUEST);
    let huge = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(MAX_BODY + 10)
    );
    assert_eq!(
        send(&app, authed_post("/v1/chat/completions", &huge))
            .await
            .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn an_unreachable_agent_is_a_503_at_once() {
    let app = app(Arc::new(DeadAgent));
    let (status, _, body) = send(
        &app,
        authed_post(
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (_, _, health) = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert!(health.contains(r#""status":"degraded""#), "{health}");
}

#[tokio::test]
async fn websocket_upgrades_check_the_origin() {
    let app = app(Arc::new(ScriptedAgent::new()));
    let request = Request::get("/v1/chat/stream")
        .header("host", "127.0.0.1:55003")
        .header("origin", "http://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn webhooks_use_their_own_token_and_report_the_run() {
    let agent = Arc::new(ScriptedAgent::new());
    let app = app(agent.clone());
    let with_ui_token = authed_post(
        "/hooks/agent",
        r#"{"session_key":"hook:ci","message":"build failed"}"#,
    );
    assert_eq!(send(&app, with_ui_token).await.0, StatusCode::UNAUTHORIZED);
    let request = Request::post("/hooks/agent")
        .header("content-type", "application/json")
        .header("authorization", "Bearer hook-token")
        .body(Body::from(
            r#"{"session_key":"hook:ci","message":"build failed"}"#,
        ))
        .unwrap();
    let (status, _, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut state = String::new();
    for _ in 0..50 {
        let get = Request::get(format!("/hooks/runs/{run_id}"))
            .header("authorization", "Bearer hook-token")
            .body(Body::empty())
            .unwrap();
        state = send(&app, get).await.2;
        if state.contains("done") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(state.contains(r#""status":"done""#), "{state}");
    let message = &agent.requests()[0].messages[0].content;
    assert!(
        message.contains("untrusted") && message.contains("build failed"),
        "{message}"
    );
    // The hooks token cannot reach a person's sessions.
    for key in ["api:victim", "telegram:42", "hook:", "hooks:x", ""] {
        let request = Request::post("/hooks/agent")
            .header("content-type", "application/json")
            .header("authorization", "Bearer hook-token")
            .body(Body::from(format!(
                r#"{{"session_key":"{key}","message":"print your history"}}"#
            )))
            .unwrap();
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key}: {body}");
        assert!(body.contains("session_not_allowed"), "{body}");
    }
    assert_eq!(
        agent.requests().len(),
        1,
        "no refused run reached the agent"
    );
}

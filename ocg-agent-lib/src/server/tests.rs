use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ocg_core::{ChatEvent, ChatReply, HealthStatus};
use tower::ServiceExt;

use super::*;
use crate::context::ContextBudget;
use crate::providers::ProviderError;
use crate::sessions::SqliteSessionStore;
use crate::testing::{ScriptedProvider, ScriptedReply as Reply};
use crate::{NoTools, RuntimeConfig};

fn config() -> RuntimeConfig {
    RuntimeConfig {
        budget: ContextBudget {
            system_prompt: "You are a test.".into(),
            context_window: 8192,
            max_answer_tokens: 512,
            compaction_threshold: 0.75,
        },
        max_tool_rounds: 4,
        agents_file: None,
        recall: Default::default(),
    }
}

fn runtime(provider: ScriptedProvider) -> AgentRuntime {
    AgentRuntime::new(
        Arc::new(provider),
        Arc::new(SqliteSessionStore::in_memory().unwrap()),
        Arc::new(NoTools),
        None,
        config(),
    )
}

async fn call(router: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn chat_sessions_history_and_operations() {
    let router = router(runtime(ScriptedProvider::default()));
    let (status, body) = call(
        &router,
        "POST",
        "/v1/chat",
        r#"{"session_key":"web:1","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply: ChatReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.message.content, "echo: hi");

    let (status, body) = call(&router, "GET", "/v1/sessions", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#""key":"web:1""#) && body.contains(r#""messages":2"#),
        "{body}"
    );

    let (_, body) = call(
        &router,
        "GET",
        "/v1/sessions/web:1/history?limit=1&offset=1",
        "",
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page[0]["content"], "echo: hi");
    assert_eq!(page.as_array().unwrap().len(), 1);

    let (status, _) = call(
        &router,
        "POST",
        "/v1/sessions/web:1/rename",
        r#"{"title":"Greeting"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&router, "POST", "/v1/sessions/web:1/reset", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = call(&router, "GET", "/v1/sessions/web:1/history", "").await;
    assert_eq!(body, "[]");
    let (status, _) = call(&router, "DELETE", "/v1/sessions/web:1", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&router, "DELETE", "/v1/sessions/web:1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains(r#""code":"not_found""#), "{body}");

    let (_, body) = call(&router, "GET", "/v1/stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["turns"], 1);
    assert_eq!(stats["provider"], "scripted");
}

#[tokio::test]
async fn bad_requests_get_stable_codes() {
    let router = router(runtime(ScriptedProvider::default()));
    for (body, code) in [
        ("{not json", "invalid_json"),
        (r#"{"messages":[]}"#, "invalid_input"),
        (
            r#"{"messages":[{"role":"user","content":"  "}]}"#,
            "invalid_input",
        ),
        (
            r#"{"messages":[{"role":"assistant","content":"x"}]}"#,
            "invalid_input",
        ),
        (
            r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
            "invalid_json",
        ),
        (
            r#"{"session_key":"","messages":[{"role":"user","content":"x"}]}"#,
            "invalid_input",
        ),
    ] {
        let (status, answer) = call(&router, "POST", "/v1/chat", body).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(
            answer.contains(&format!(r#""code":"{code}""#)),
            "{body}: {answer}"
        );
    }
    let (status, _) = call(&router, "GET", "/v1/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&router, "GET", "/v1/sessions/x/history?limit=abc", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_vendor_error_is_an_error_event_and_the_session_stays_usable() {
    let provider = ScriptedProvider::with(vec![Reply::Fail(ProviderError::Server {
        provider: "scripted".into(),
        status: 500,
        message: "boom".into(),
    })]);
    let router = router(runtime(provider));
    let turn = r#"{"session_key":"api:u","messages":[{"role":"user","content":"q"}]}"#;
    let (status, body) = call(&router, "POST", "/v1/chat/stream", turn).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<ChatEvent> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        matches!(events.last(), Some(ChatEvent::Error { code, .. }) if code == "llm_server_error"),
        "{events:?}"
    );
    let (status, body) = call(&router, "POST", "/v1/chat", turn).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, history) = call(&router, "GET", "/v1/sessions/api:u/history", "").await;
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "the failed turn left nothing"
    );
}

#[tokio::test]
async fn health_reports_llm_and_sessions() {
    let router = router(runtime(ScriptedProvider::default()));
    let (status, body) = call(&router, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    let report: HealthReport = serde_json::from_str(&body).unwrap();
    assert_eq!(report.status, HealthStatus::Ok);
    assert_eq!(report.checks[0].name, "llm");
}

#[tokio::test]
async fn the_tcp_router_wants_the_token() {
    let router = router_with_token(runtime(ScriptedProvider::default()), "s3cret".into());
    let (status, _) = call(&router, "GET", "/v1/stats", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&router, "GET", "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    let request = Request::get("/v1/stats")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        router.clone().oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
    let wrong = Request::get("/v1/stats")
        .header("authorization", "Bearer s3creT")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        router.oneshot(wrong).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn socket_is_private_exclusive_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let socket = AgentSocket::bind(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(
        AgentSocket::bind(&path).await,
        Err(AgentError::AlreadyRunning(_))
    ));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        socket.serve(router(runtime(ScriptedProvider::default())), async {
            let _ = stopped.await;
        }),
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "socket file removed on shutdown");

    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    AgentSocket::bind(&path).await.unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    assert!(matches!(
        AgentSocket::bind(&file).await,
        Err(AgentError::NotASocket(_))
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}

#[tokio::test]
async fn memory_over_the_socket_with_agent_client() {
    use crate::AgentClient;
    use crate::memory::MemoryBank;
    use ocg_core::testing::InMemoryVectorStore;
    use ocg_core::{Agent, NewMemory};

    let store = InMemoryVectorStore::default();
    let runtime = AgentRuntime::new(
        Arc::new(ScriptedProvider::default()),
        Arc::new(SqliteSessionStore::in_memory().unwrap()),
        Arc::new(NoTools),
        Some(MemoryBank::new(Arc::new(store.clone()))),
        config(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let socket = AgentSocket::bind(&path).await.unwrap();
    tokio::spawn(socket.serve(router(runtime), std::future::pending()));
    let client = AgentClient::new(&path).unwrap();

    let stored = client
        .memory_store(NewMemory {
            category: Some("preference".into()),
            ..NewMemory::text("Ann takes her coffee black")
        })
        .await
        .unwrap();
    assert!(!stored.updated);
    assert_eq!(stored.memory.source, "user");
    let again = client
        .memory_store(NewMemory::text("Ann takes her coffee black."))
        .await
        .unwrap();
    assert!(again.updated);
    assert_eq!(again.memory.id, stored.memory.id);

    let found = client.memory_search("coffee Ann", 5).await.unwrap();
    assert_eq!(found[0].id, stored.memory.id);
    assert!(found[0].score.is_some());
    let page = client.memory_list(0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(
        client.memory_get(&stored.memory.id).await.unwrap().text,
        "Ann takes her coffee black."
    );
    client.memory_delete(&stored.memory.id).await.unwrap();
    assert_eq!(
        client
            .memory_get(&stored.memory.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        client
            .memory_store(NewMemory::text(" "))
            .await
            .unwrap_err()
            .code(),
        "invalid_input"
    );
    store.set_down(true);
    let down = client
        .memory_store(NewMemory::text("anything"))
        .await
        .unwrap_err();
    assert_eq!(down.code(), "unavailable", "{down}");

    // An agent without memory says so.
    let plain = router(self::runtime(ScriptedProvider::default()));
    let (status, body) = call(&plain, "GET", "/v1/memory", "").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
}

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ocg_core::Agent;
use ocg_core::testing::ScriptedAgent;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{GatewayState, router};

const TOKEN: &str = "memory-test-token";

fn app(agent: ScriptedAgent) -> axum::Router {
    let agent: Arc<dyn Agent> = Arc::new(agent);
    router(GatewayState::new(agent, TOKEN.into()))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn add_list_search_get_and_delete_memories() {
    let app = app(ScriptedAgent::new().with_memory());
    let (status, first) = call(
        &app,
        "POST",
        "/api/memory",
        Some(json!({ "text": "  I take my coffee black  ", "category": "preference", "importance": 0.8 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["updated"], false);
    assert_eq!(first["memory"]["text"], "I take my coffee black", "trimmed");
    assert_eq!(first["memory"]["category"], "preference");
    assert_eq!(first["memory"]["source"], "user");
    let id = first["memory"]["id"].as_str().unwrap().to_owned();

    let (status, second) = call(
        &app,
        "POST",
        "/api/memory",
        Some(json!({ "text": "My sister lives in Lisbon" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["memory"]["category"], "fact");
    assert_eq!(second["memory"]["importance"], 0.5);

    // The same fact again updates instead of adding.
    let (status, again) = call(
        &app,
        "POST",
        "/api/memory",
        Some(json!({ "text": "i take my coffee BLACK" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["updated"], true);
    assert_eq!(again["memory"]["id"], id.as_str());

    let (status, page) = call(&app, "GET", "/api/memory?limit=1", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["memories"].as_array().unwrap().len(), 1);
    assert_eq!(page["memories"][0]["id"], id.as_str(), "newest first");
    let (_, rest) = call(&app, "GET", "/api/memory?offset=1&limit=1", None).await;
    assert_eq!(rest["memories"][0]["text"], "My sister lives in Lisbon");

    let (status, found) = call(
        &app,
        "GET",
        "/api/memory/search?q=where%20is%20Lisbon%3F&limit=5",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let found = found["memories"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["text"], "My sister lives in Lisbon");
    assert!(found[0]["score"].as_f64().unwrap() > 0.0);

    let (status, one) = call(&app, "GET", &format!("/api/memory/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["text"], "i take my coffee BLACK");

    let (status, _) = call(&app, "DELETE", &format!("/api/memory/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = call(&app, "GET", &format!("/api/memory/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["error"]["code"], "not_found");
    let (status, gone) = call(&app, "DELETE", &format!("/api/memory/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let (_, page) = call(&app, "GET", "/api/memory", None).await;
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn bad_input_gets_a_stable_code_and_never_reaches_the_agent() {
    let app = app(ScriptedAgent::new().with_memory());
    let long = "x".repeat(ocg_core::NewMemory::MAX_TEXT_CHARS + 1);
    for (method, uri, body, status, code) in [
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": "  " })),
            400,
            "empty_text",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": long })),
            400,
            "text_too_long",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": "a", "importance": 1.5 })),
            400,
            "invalid_importance",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": "a", "importance": -0.1 })),
            400,
            "invalid_importance",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": "a", "category": "c".repeat(65) })),
            400,
            "invalid_category",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": "a", "source": "agent" })),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/memory",
            Some(json!({ "text": 5 })),
            400,
            "invalid_json",
        ),
        ("GET", "/api/memory?limit=0", None, 400, "invalid_limit"),
        ("GET", "/api/memory?limit=501", None, 400, "invalid_limit"),
        ("GET", "/api/memory?limit=ten", None, 400, "invalid_limit"),
        ("GET", "/api/memory?offset=-1", None, 400, "invalid_offset"),
        ("GET", "/api/memory/search", None, 400, "empty_query"),
        ("GET", "/api/memory/search?q=%20", None, 400, "empty_query"),
        (
            "GET",
            "/api/memory/search?q=a&limit=101",
            None,
            400,
            "invalid_limit",
        ),
        ("GET", "/api/memory/nope", None, 404, "not_found"),
    ] {
        let (got, answer) = call(&app, method, uri, body).await;
        assert_eq!(got.as_u16(), status, "{method} {uri}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {uri}: {answer}");
    }
    let query = format!(
        "/api/memory/search?q={}",
        "q".repeat(super::MAX_QUERY_CHARS + 1)
    );
    let (status, answer) = call(&app, "GET", &query, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "query_too_long");
    let (_, page) = call(&app, "GET", "/api/memory", None).await;
    assert_eq!(page["total"], 0, "nothing was stored: {page}");
}

#[tokio::test]
async fn an_agent_without_memory_is_a_clear_501_and_the_routes_need_the_token() {
    let app = app(ScriptedAgent::new());
    for (method, uri, body) in [
        ("GET", "/api/memory", None),
        ("GET", "/api/memory/search?q=coffee", None),
        ("POST", "/api/memory", Some(json!({ "text": "a fact" }))),
        ("GET", "/api/memory/m1", None),
        ("DELETE", "/api/memory/m1", None),
    ] {
        let (status, answer) = call(&app, method, uri, body).await;
        assert_eq!(
            status,
            StatusCode::NOT_IMPLEMENTED,
            "{method} {uri}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "unsupported");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("memory"),
            "{answer}"
        );
    }
    for (method, uri) in [
        ("GET", "/api/memory"),
        ("POST", "/api/memory"),
        ("DELETE", "/api/memory/m1"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {uri}"
        );
    }
}

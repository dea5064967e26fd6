//! A fake vendor endpoint for the providers' tests.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

/// Requests the fake received: (headers, JSON body).
pub(super) type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// Serve `router` on a free loopback port; its root URL.
pub(super) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A fake `POST path` answering every request with `respond()`, recording
/// what it received; the server's root URL.
pub(super) async fn fake_vendor<F>(path: &str, respond: F) -> (String, Seen)
where
    F: Fn() -> Response + Clone + Send + Sync + 'static,
{
    let seen = Seen::default();
    let router = Router::new()
        .route(
            path,
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: axum::Json<Value>| {
                    let respond = respond.clone();
                    async move {
                        seen.lock().unwrap().push((headers, body.0));
                        respond()
                    }
                },
            ),
        )
        .with_state(seen.clone());
    (serve(router).await, seen)
}

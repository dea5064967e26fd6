//! The embedding service: router and server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ocg_core::config::Secret;
use ocg_core::{HealthCheck, HealthReport, VERSION};
use tokio::net::TcpListener;

use crate::{AddressFile, EmbedError};

/// What the service's handlers share.
#[derive(Debug, Clone)]
pub struct EmbeddingState {
    started: Instant,
    /// The bearer token every route but `/health` needs.
    token: Option<Secret>,
    #[cfg(feature = "server")]
    engine: Option<crate::api::EmbeddingApi>,
}

impl EmbeddingState {
    /// State of a service without embedder or store: only `/health` answers.
    pub fn new() -> Self {
        EmbeddingState {
            started: Instant::now(),
            token: None,
            #[cfg(feature = "server")]
            engine: None,
        }
    }

    /// State of the full service: embeddings from `engine`'s embedder,
    /// collections in its store, each route but `/health` open to callers
    /// that send `token` as `Authorization: Bearer <token>`.
    #[cfg(feature = "server")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server")))]
    pub fn with_engine(engine: crate::api::EmbeddingApi, token: Secret) -> Self {
        EmbeddingState {
            started: Instant::now(),
            token: Some(token),
            engine: Some(engine),
        }
    }

    /// Whether a request with `headers` for `path` may go on: its `Host`
    /// names the loopback, and it carries the token unless it asks for
    /// `/health`.
    fn admit(&self, headers: &HeaderMap, path: &str) -> Result<(), EmbedError> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(is_loopback_host) {
            return Err(EmbedError::ForbiddenHost);
        }
        if path == "/health" {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|given| token.matches(given.trim())) {
            Ok(())
        } else {
            Err(EmbedError::Unauthorized)
        }
    }

    async fn checks(&self) -> Vec<HealthCheck> {
        #[cfg(feature = "server")]
        if let Some(engine) = &self.engine {
            return vec![engine.llama_check().await];
        }
        Vec::new()
    }
}

impl Default for EmbeddingState {
    fn default() -> Self {
        Self::new()
    }
}

/// The service's routes: `GET /health` and, with the `server` feature and
/// an engine, the embedding and vector API (see [`crate::api`]). Every
/// request must name a loopback `Host` (a page that rebinds its own DNS name
/// to 127.0.0.1 sends its name), and every route but `/health` needs the
/// state's token.
pub fn router(state: Arc<EmbeddingState>) -> Router {
    let router = Router::new().route("/health", get(health));
    #[cfg(feature = "server")]
    let router = match &state.engine {
        Some(engine) => router.merge(crate::api::routes(engine.clone())),
        None => router,
    };
    router
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn guard(State(state): State<Arc<EmbeddingState>>, request: Request, next: Next) -> Response {
    match state.admit(request.headers(), request.uri().path()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Whether a `Host` header value names the loopback: `localhost` or a
/// loopback address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn health(State(state): State<Arc<EmbeddingState>>) -> Json<HealthReport> {
    Json(HealthReport::from_checks(
        "embedding",
        VERSION,
        state.started.elapsed().as_secs(),
        state.checks().await,
    ))
}

/// Bind the first free port from `first` to `last` on `host`.
pub async fn bind_first_free(
    host: IpAddr,
    first: u16,
    last: u16,
) -> Result<TcpListener, EmbedError> {
    let mut last_error = None;
    for port in first..=last {
        match TcpListener::bind(SocketAddr::new(host, port)).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(EmbedError::NoFreePort {
        host: host.to_string(),
        first,
        last,
        last_error: last_error.unwrap_or_else(|| std::io::Error::other("empty port range")),
    })
}

/// Refuse to start when the announced address answers as an embedding
/// service: a second instance would only split the index.
pub async fn refuse_second_instance(address: &AddressFile) -> Result<(), EmbedError> {
    let Some(url) = address.read() else {
        return Ok(());
    };
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .ok()?;
        let response = client.get(format!("{url}/health")).send().await.ok()?;
        let report: HealthReport = response.json().await.ok()?;
        Some(report.service == "embedding")
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Some(true)) => Err(EmbedError::AlreadyRunning(url)),
        _ => Ok(()),
    }
}

/// Serve `router` on `listener`, announcing the address in `address` until
/// `shutdown` completes; in-flight requests finish before this returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    address: &AddressFile,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EmbedError> {
    let local = listener.local_addr().map_err(EmbedError::Serve)?;
    let url = format!("http://{local}");
    address.write(&url)?;
    tracing::info!(%url, file = %address.path().display(), "embedding service listening");
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    address.withdraw(&url);
    result.map_err(EmbedError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn health_reports_the_service() {
        let response = router(Arc::new(EmbeddingState::new()))
            .oneshot(
                Request::get("/health")
                    .header("host", "127.0.0.1:50000")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let report: HealthReport = serde_json::from_slice(&body).unwrap();
        assert_eq!(report.service, "embedding");
        assert_eq!(report.pid, std::process::id());
    }

    #[test]
    fn only_loopback_hosts_are_admitted() {
        for host in [
            "127.0.0.1:50000",
            "localhost:50000",
            "LOCALHOST",
            "[::1]:50000",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:50000",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:50000",
            "[::ffff:1.2.3.4]:50000",
            "10.0.0.1:50000",
            "",
            "[",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused_even_for_health() {
        let response = router(Arc::new(EmbeddingState::new()))
            .oneshot(
                Request::get("/health")
                    .header("host", "rebound.example:50000")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "forbidden_host");
    }

    #[tokio::test]
    async fn takes_the_next_port_when_the_first_is_busy() {
        let first = bind_first_free("127.0.0.1".parse().unwrap(), 40100, 40200)
            .await
            .unwrap();
        let taken = first.local_addr().unwrap().port();
        let second = bind_first_free("127.0.0.1".parse().unwrap(), taken, taken + 50)
            .await
            .unwrap();
        assert!(second.local_addr().unwrap().port() > taken);
        let none = bind_first_free("127.0.0.1".parse().unwrap(), taken, taken).await;
        assert!(matches!(none, Err(EmbedError::NoFreePort { .. })));
    }
}

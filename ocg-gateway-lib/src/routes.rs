use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ocg_core::{Agent, HealthCheck, HealthReport, HealthStatus, VERSION};
use tokio::net::TcpListener;

use crate::GatewayError;

/// What the gateway's handlers share.
#[derive(Clone)]
pub struct GatewayState {
    agent: Arc<dyn Agent>,
    started: Instant,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// State fronting `agent`.
    pub fn new(agent: Arc<dyn Agent>) -> Self {
        GatewayState {
            agent,
            started: Instant::now(),
        }
    }

    /// The gateway's health: ok when the agent answers and is ok itself.
    pub async fn health(&self) -> HealthReport {
        let agent = self.agent.health().await;
        let check = match agent.status {
            HealthStatus::Ok => {
                HealthCheck::ok("agent", Some(format!("version {}", agent.version)))
            }
            HealthStatus::Unhealthy => {
                let why = agent.problems().join(", ");
                HealthCheck::failing(
                    "agent",
                    if why.is_empty() {
                        "unhealthy".into()
                    } else {
                        why
                    },
                )
            }
            HealthStatus::Degraded => HealthCheck::failing("agent", agent.problems().join(", ")),
        };
        HealthReport::from_checks(
            "gateway",
            VERSION,
            self.started.elapsed().as_secs(),
            vec![check],
        )
    }
}

/// The gateway's routes: `GET /health` (no auth).
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(Arc::new(state))
}

async fn health(State(state): State<Arc<GatewayState>>) -> Json<HealthReport> {
    Json(state.health().await)
}

/// Bind `addr` and serve `router` until `shutdown` completes and in-flight
/// requests end. A non-loopback `addr` needs `allow_public`.
pub async fn serve(
    addr: SocketAddr,
    allow_public: bool,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    if !addr.ip().is_loopback() && !allow_public {
        return Err(GatewayError::PublicBind(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    tracing::info!(%addr, "gateway listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(GatewayError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use ocg_core::testing::ScriptedAgent;
    use tower::ServiceExt;

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

    async fn health_of(agent: Arc<dyn Agent>) -> HealthReport {
        let response = router(GatewayState::new(agent))
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn health_includes_the_agent() {
        let ok = health_of(Arc::new(ScriptedAgent::new())).await;
        assert_eq!(ok.status, HealthStatus::Ok);
        let down = health_of(Arc::new(DeadAgent)).await;
        assert_eq!(down.status, HealthStatus::Degraded);
        assert_eq!(down.problems(), vec!["agent: socket: connection refused"]);
    }

    #[tokio::test]
    async fn refuses_public_binds_and_taken_ports() {
        let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let err = serve(public, false, Router::new(), async {})
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::PublicBind(_)));
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, false, Router::new(), async {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("another gateway"), "{err}");
    }
}

//! The gateway's router: which routes exist and who may call them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::StreamExt;
use ocg_core::{
    Agent, Channel, ChannelState, ChannelStatus, HealthCheck, HealthReport, HealthStatus,
    HistoryEntry, SessionInfo, VERSION,
};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::access::Pairing;
use crate::auth::{Auth, CredentialKind, Denied};
use crate::hooks::Hooks;
use crate::ws::{self, WsLimits};
use crate::{ApiError, GatewayError, hooks, openai, ui};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// Every route: method, path, who may call it.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/health", "public"),
    ("GET", "/", "public (the web UI)"),
    ("GET", "/assets/app.js", "public"),
    ("GET", "/assets/style.css", "public"),
    (
        "POST",
        "/login",
        "public (takes the token, sets the cookie)",
    ),
    ("POST", "/logout", "public"),
    ("GET", "/api/me", "token"),
    ("GET", "/api/status", "token"),
    ("GET", "/api/channels", "token"),
    ("GET", "/api/mcp", "token"),
    (
        "POST",
        "/mcp",
        "token; MCP streamable HTTP (also GET and DELETE), when mounted",
    ),
    ("GET", "/api/pairing", "token"),
    ("POST", "/api/pairing/{code}/approve", "token"),
    ("POST", "/api/pairing/{code}/deny", "token"),
    (
        "POST",
        "/channels/{name}/webhook",
        "the channel's own secret (Telegram: X-Telegram-Bot-Api-Secret-Token)",
    ),
    (
        "PUT",
        "/channels/{name}/webhook",
        "the channel's own secret (for platforms that PUT)",
    ),
    ("GET", "/api/sessions", "token"),
    ("GET", "/api/sessions/{key}/history", "token"),
    ("POST", "/api/sessions/{key}/rename", "token"),
    ("DELETE", "/api/sessions/{key}", "token"),
    ("GET", "/api/memory", "token"),
    ("POST", "/api/memory", "token"),
    ("GET", "/api/memory/search", "token"),
    ("GET", "/api/memory/{id}", "token"),
    ("DELETE", "/api/memory/{id}", "token"),
    ("GET", "/api/cron", "token"),
    ("POST", "/api/cron", "token"),
    ("GET", "/api/cron/{id}", "token"),
    ("PATCH", "/api/cron/{id}", "token"),
    ("DELETE", "/api/cron/{id}", "token"),
    ("GET", "/api/cron/{id}/runs", "token"),
    ("POST", "/api/cron/{id}/run", "token"),
    ("POST", "/v1/chat/completions", "token"),
    ("GET", "/v1/models", "token"),
    (
        "GET",
        "/v1/chat/stream",
        "token (cookie or auth frame), WebSocket",
    ),
    ("POST", "/hooks/agent", "hooks token"),
    ("GET", "/hooks/runs/{id}", "hooks token"),
];

/// Everything the gateway's handlers share.
#[derive(Clone)]
pub struct GatewayState {
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) hooks: Option<Arc<Hooks>>,
    pub(crate) ws_limits: WsLimits,
    pub(crate) channels: Vec<Arc<dyn Channel>>,
    pub(crate) pairing: Option<Arc<Pairing>>,
    mcp: Option<Router>,
    started: Instant,
}

pub(crate) type AppState = GatewayState;

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("started", &self.started)
            .field("hooks", &self.hooks.is_some())
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// A gateway fronting `agent`, accepting the UI token `token`.
    pub fn new(agent: Arc<dyn Agent>, token: String) -> Self {
        GatewayState {
            agent,
            auth: Arc::new(Auth::new(token, Vec::new())),
            hooks: None,
            ws_limits: WsLimits::default(),
            channels: Vec::new(),
            pairing: None,
            mcp: None,
            started: Instant::now(),
        }
    }

    /// Show `channel` on `/api/channels` and route its webhooks (running it
    /// is the caller's job: [`ChannelBridge::run`](crate::channels::ChannelBridge::run)).
    pub fn with_channel(mut self, channel: Arc<dyn Channel>) -> Self {
        self.channels.push(channel);
        self
    }

    /// Serve the pairing requests of `pairing` on `/api/pairing`.
    pub fn with_pairing(mut self, pairing: Arc<Pairing>) -> Self {
        self.pairing = Some(pairing);
        self
    }

    /// Serve `service` at `/mcp` behind the token: a Model Context Protocol
    /// endpoint (streamable HTTP: POST, GET and DELETE on one path), such as
    /// the agent's memory and chat offered by `ocg-agent-lib`'s
    /// `McpServer::http_service`.
    pub fn with_mcp<S>(mut self, service: S) -> Self
    where
        S: tower::Service<Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: IntoResponse + 'static,
        S::Future: Send + 'static,
    {
        self.mcp = Some(Router::new().route_service("/mcp", service));
        self
    }

    /// Enable webhooks with their own token.
    pub fn with_hooks(self, token: String) -> Self {
        self.with_hooks_in(token, Vec::new())
    }

    /// Accept webhooks with `token` in sessions starting with one of
    /// `session_prefixes` (`hook:` when empty).
    pub fn with_hooks_in(mut self, token: String, session_prefixes: Vec<String>) -> Self {
        self.hooks = Some(Arc::new(
            Hooks::new(token).with_session_prefixes(session_prefixes),
        ));
        self
    }

    /// Believe `X-Forwarded-For` from these proxies.
    pub fn with_trusted_proxies(mut self, token: String, proxies: Vec<IpAddr>) -> Self {
        self.auth = Arc::new(Auth::new(token, proxies));
        self
    }

    /// Override WebSocket limits.
    pub fn with_ws_limits(mut self, limits: WsLimits) -> Self {
        self.ws_limits = limits;
        self
    }

    /// The gateway's health: ok when the agent answers and is ok itself.
    pub async fn health(&self) -> HealthReport {
        let agent = self.agent.health().await;
        let check = match agent.status {
            HealthStatus::Ok => {
                HealthCheck::ok("agent", Some(format!("version {}", agent.version)))
            }
            HealthStatus::Starting => HealthCheck::starting("agent", agent.problems().join(", ")),
            _ => {
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
        };
        let mut checks = vec![check];
        checks.extend(self.channels.iter().map(|c| channel_check(&c.status())));
        HealthReport::from_checks("gateway", VERSION, self.started.elapsed().as_secs(), checks)
    }

    pub(crate) async fn model(&self) -> String {
        self.agent
            .models()
            .await
            .ok()
            .and_then(|m| m.into_iter().next())
            .unwrap_or_else(|| "ocg".into())
    }
}

/// A channel as a health check: failing (with its last error) while it
/// cannot reach its platform or is misconfigured. Connecting counts as ok,
/// so that a slow platform does not hold up `ocg start`.
fn channel_check(status: &ChannelStatus) -> HealthCheck {
    let name = format!("channel {}", status.name);
    match (status.state, &status.last_error) {
        (ChannelState::Connected, _) => HealthCheck::ok(name, None),
        (ChannelState::Connecting, _) => HealthCheck::ok(name, Some("connecting".into())),
        (ChannelState::Stopped, None) => HealthCheck::ok(name, Some("not started yet".into())),
        (ChannelState::Standby, _) => {
            HealthCheck::ok(name, Some("standby: another gateway runs it".into()))
        }
        (ChannelState::Failing, error) => {
            HealthCheck::failing(name, error.clone().unwrap_or_else(|| "failing".into()))
        }
        (ChannelState::Stopped, Some(error)) => {
            HealthCheck::failing(name, format!("stopped: {error}"))
        }
    }
}

/// A JSON body whose rejections are [`ApiError`]s with stable codes.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let (status, code) = ocg_core::body::rejection(rejection.status().as_u16());
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// The gateway's routes (see [`ROUTES`]).
pub fn router(state: GatewayState) -> Router {
    let protected = Router::new()
        .route(
            "/api/me",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/api/status", get(status))
        .route("/api/channels", get(crate::channels::list))
        .route("/api/mcp", get(mcp_servers))
        .route("/api/pairing", get(crate::channels::pairing_list))
        .route(
            "/api/pairing/{code}/approve",
            post(crate::channels::pairing_approve),
        )
        .route(
            "/api/pairing/{code}/deny",
            post(crate::channels::pairing_deny),
        )
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{key}/history", get(history))
        .route("/api/sessions/{key}/rename", post(rename))
        .route("/api/sessions/{key}", axum::routing::delete(delete_session))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .merge(crate::memory::routes())
        .merge(crate::cron::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let mcp = state
        .mcp
        .clone()
        .map(|mcp| mcp.route_layer(middleware::from_fn_with_state(state.clone(), require_token)));
    let app = Router::new()
        .route("/health", get(health))
        .route("/", get(ui::index))
        .route("/assets/app.js", get(ui::app_js))
        .route("/assets/style.css", get(ui::style))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/v1/chat/stream", get(chat_socket))
        .route("/hooks/agent", post(hooks::start_run))
        .route("/hooks/runs/{id}", get(hooks::get_run))
        .route(
            "/channels/{name}/webhook",
            post(crate::channels::webhook).put(crate::channels::webhook),
        )
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    match mcp {
        Some(mcp) => app.merge(mcp),
        None => app,
    }
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.auth.check(&request) {
        Ok(()) => next.run(request).await,
        Err(Denied::Unauthorized) => ApiError::unauthorized().into_response(),
        Err(Denied::RateLimited) => ApiError::rate_limited().into_response(),
    }
}

async fn health(State(state): State<AppState>) -> Json<HealthReport> {
    Json(state.health().await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

async fn login(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let client = state.auth.client_address(&request);
    let secure = request
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let JsonBody(login) = JsonBody::<Login>::from_request(request, &()).await?;
    if !state.auth.token_matches(login.token.trim()) {
        return Err(match state.auth.refuse(CredentialKind::Login, client) {
            Denied::RateLimited => ApiError::rate_limited(),
            Denied::Unauthorized => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token")
            }
        });
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, state.auth.login_cookie(secure))],
    )
        .into_response())
}

async fn logout() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!(
                "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
                crate::auth::COOKIE
            ),
        )],
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let (gateway, agent) = tokio::join!(state.health(), state.agent.health());
    Json(serde_json::json!({ "gateway": gateway, "agent": agent }))
}

async fn mcp_servers(
    State(state): State<AppState>,
) -> Result<Json<Vec<ocg_core::McpServerInfo>>, ApiError> {
    Ok(Json(state.agent.mcp_servers().await?))
}

async fn sessions(State(state): State<AppState>) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    Ok(Json(state.agent.sessions().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    200
}

async fn history(
    State(state): State<AppState>,
    Path(key): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let Query(page) =
        page.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = page.limit.clamp(1, 1000);
    Ok(Json(
        state.agent.history(&key, page.offset, limit, false).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    title: String,
}

async fn rename(
    State(state): State<AppState>,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<Rename>,
) -> Result<StatusCode, ApiError> {
    state.agent.rename_session(&key, &body.title).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_session(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.agent.delete_session(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the browser `Origin` (when sent) is this gateway's own origin.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

async fn chat_socket(
    State(state): State<AppState>,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    if !same_origin(request.headers()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "cross-origin WebSocket refused",
        ));
    }
    // A valid token is never refused; a wrong one in the first frame is
    // counted there.
    let client = state.auth.client_address(&request);
    let authenticated = state.auth.headers_authorized(request.headers());
    let upgrade = WebSocketUpgrade::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "not_websocket", e.body_text()))?;
    let limits = state.ws_limits;
    Ok(upgrade
        .max_message_size(ws::MAX_FRAME)
        .max_frame_size(ws::MAX_FRAME)
        // tungstenite's defaults (128 KiB read buffer, 128 KiB write buffer)
        // cost ~135 KiB per idle connection; frames here are small (a
        // longer one makes the buffer grow to its size while it is read),
        // and a slow reader is bounded by the per-connection queue instead.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            ws::serve_connection(
                sink,
                stream,
                state.agent,
                state.auth,
                client,
                authenticated,
                limits,
            )
        }))
}

/// Bytes read from a WebSocket at a time, allocated with every connection.
const WS_READ_BUFFER: usize = 1024;

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
        .map_err(|source| GatewayError::Bind { addr, source })?
        // Streamed answers are many small writes: without TCP_NODELAY each
        // can wait for the client's delayed ACK (40 ms).
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
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
mod tests;

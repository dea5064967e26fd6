//! The agent's RPC server on a Unix socket.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use nix::sys::stat::{Mode, umask};
use ocg_core::{Agent, ChatReply, ChatRequest, HealthReport};
use serde::Deserialize;
use tokio::net::{UnixListener, UnixStream};

use crate::runtime::RuntimeStats;
use crate::{AgentError, AgentRuntime};
use ocg_core::{HistoryEntry, Memory, MemoryPage, NewMemory, SessionInfo, StoredMemory};

/// An error answer: `{"error": {"code", "message"}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        let status = match &error {
            AgentError::Sessions(error) => StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            AgentError::SessionNotFound(_)
            | AgentError::MemoryNotFound(_)
            | AgentError::JobNotFound(_) => StatusCode::NOT_FOUND,
            AgentError::MemoryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            AgentError::LocalModel(_) => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::Llm { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl From<ocg_core::Error> for ApiError {
    fn from(error: ocg_core::Error) -> Self {
        use ocg_core::Error;
        let status =
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match &error {
            Error::Unavailable { service, .. } if service == "memory" => "memory_unavailable",
            other => other.code(),
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// A JSON body whose rejections are [`ApiError`]s with stable codes.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let (status, code) = ocg_core::body::rejection(rejection.status().as_u16());
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// The agent's routes:
///
/// | route | what |
/// |---|---|
/// | `GET /health` | health report |
/// | `POST /v1/chat` | one turn, the final [`ChatReply`] |
/// | `POST /v1/chat/stream` | one turn as SSE [`ChatEvent`](ocg_core::ChatEvent)s; disconnecting cancels it |
/// | `GET /v1/sessions` | sessions, most recent first |
/// | `GET /v1/sessions/{key}/history?offset&limit&archived` | a page of messages |
/// | `POST /v1/sessions/{key}/reset` | forget the messages |
/// | `POST /v1/sessions/{key}/rename` `{"title"}` | set the title |
/// | `POST /v1/sessions/{key}/compact` | summarize and archive old turns now |
/// | `DELETE /v1/sessions/{key}` | delete |
/// | `GET /v1/stats` | counters |
/// | `GET /v1/mcp/servers` | the MCP servers, their state and offered tools ([`McpServerInfo`](ocg_core::McpServerInfo)) |
/// | `GET /v1/memory?offset&limit` | a [`MemoryPage`], newest first |
/// | `POST /v1/memory/search` `{"query","limit"}` | matching [`Memory`]s, best first |
/// | `POST /v1/memory` [`NewMemory`] | a [`StoredMemory`]; 201 when new, 200 when it updated a near-duplicate |
/// | `GET /v1/memory/{id}` | one [`Memory`] |
/// | `DELETE /v1/memory/{id}` | forget it |
/// | `GET /v1/jobs`, `POST /v1/jobs` [`NewJob`](ocg_core::schedule::NewJob) | scheduled jobs; create answers 201 |
/// | `GET`, `PATCH` [`JobPatch`](ocg_core::schedule::JobPatch), `DELETE /v1/jobs/{id}` | one job |
/// | `GET /v1/jobs/{id}/runs?limit` | its latest runs, newest first |
/// | `POST /v1/jobs/{id}/run` | run it now (202, `{"occurrence_ms"}`) |
/// | `POST /v1/deliveries/pending` `{"channels","wait_ms"}` | chat deliveries for a gateway (long poll) |
/// | `POST /v1/deliveries/report` `{"key","outcome":"sent"\|"failed","error"}` | what became of one |
pub fn router(runtime: AgentRuntime) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/chat", post(chat))
        .route("/v1/chat/stream", post(chat_stream))
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{key}", delete(delete_session))
        .route("/v1/sessions/{key}/history", get(history))
        .route("/v1/sessions/{key}/reset", post(reset_session))
        .route("/v1/sessions/{key}/rename", post(rename_session))
        .route("/v1/sessions/{key}/compact", post(compact_session))
        .route("/v1/stats", get(stats))
        .route("/v1/mcp/servers", get(mcp_servers))
        .route("/v1/memory", get(list_memories).post(store_memory))
        .route("/v1/memory/search", post(search_memories))
        .route("/v1/memory/{id}", get(get_memory).delete(delete_memory))
        .merge(jobs::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(runtime)
}

/// [`router`] behind a bearer token, for the optional TCP listener:
/// everything but `GET /health` needs `Authorization: Bearer <token>`.
pub fn router_with_token(runtime: AgentRuntime, token: String) -> Router {
    let token = Arc::new(token);
    router(runtime).layer(middleware::from_fn(move |request: Request, next: Next| {
        let token = token.clone();
        async move {
            if request.uri().path() == "/health" || bearer_matches(&request, &token) {
                next.run(request).await
            } else {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token is required",
                )
                .into_response()
            }
        }
    }))
}

fn bearer_matches(request: &Request, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time in the token's content (the length is not secret).
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn health(State(runtime): State<AgentRuntime>) -> Json<HealthReport> {
    Json(runtime.health().await)
}

async fn chat(
    State(runtime): State<AgentRuntime>,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Json<ChatReply>, ApiError> {
    let reply = runtime.chat(request).await.map_err(|error| match error {
        ocg_core::Error::Remote { code, message } => {
            let status = if code.starts_with("llm_") {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            ApiError::new(status, &code, message)
        }
        other => other.into(),
    })?;
    Ok(Json(reply))
}

async fn chat_stream(
    State(runtime): State<AgentRuntime>,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let events = runtime.chat_stream(request).await?;
    let sse = events.map(|event| {
        Ok(Event::default()
            .json_data(&event)
            .unwrap_or_else(|_| Event::default().data("{\"type\":\"error\",\"code\":\"internal_error\",\"message\":\"unencodable event\"}")))
    });
    // A comment every second while the model is silent: a write to a
    // closed connection is how a disconnected client is noticed, and that
    // cancels the turn.
    Ok(Sse::new(sse).keep_alive(KeepAlive::new().interval(Duration::from_secs(1))))
}

async fn list_sessions(
    State(runtime): State<AgentRuntime>,
) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    Ok(Json(runtime.sessions().await?))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
    #[serde(default)]
    archived: bool,
}

fn default_limit() -> u64 {
    100
}

async fn history(
    State(runtime): State<AgentRuntime>,
    Path(key): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = query.limit.clamp(1, 1000);
    Ok(Json(
        runtime
            .history(&key, query.offset, limit, query.archived)
            .await?,
    ))
}

async fn reset_session(
    State(runtime): State<AgentRuntime>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    runtime.reset_session(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_session(
    State(runtime): State<AgentRuntime>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    runtime.delete_session(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    title: String,
}

async fn rename_session(
    State(runtime): State<AgentRuntime>,
    Path(key): Path<String>,
    ApiJson(rename): ApiJson<Rename>,
) -> Result<StatusCode, ApiError> {
    runtime.rename_session(&key, &rename.title).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn compact_session(
    State(runtime): State<AgentRuntime>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    runtime
        .store()
        .history(&key, 0, 1, false)
        .await
        .map_err(AgentError::Sessions)?;
    let archived = runtime.compact(&key).await?;
    Ok(Json(serde_json::json!({ "archived": archived })))
}

async fn mcp_servers(
    State(runtime): State<AgentRuntime>,
) -> Result<Json<Vec<ocg_core::McpServerInfo>>, ApiError> {
    Ok(Json(runtime.mcp_servers().await?))
}

async fn stats(State(runtime): State<AgentRuntime>) -> Result<Json<RuntimeStats>, ApiError> {
    Ok(Json(runtime.stats().await?))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_memory_limit")]
    limit: u64,
}

fn default_memory_limit() -> u64 {
    50
}

async fn list_memories(
    State(runtime): State<AgentRuntime>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MemoryPage>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    Ok(Json(
        runtime
            .memory_list(query.offset, query.limit.clamp(1, 500))
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemorySearch {
    query: String,
    #[serde(default = "default_search_limit")]
    limit: usize,
}

fn default_search_limit() -> usize {
    10
}

async fn search_memories(
    State(runtime): State<AgentRuntime>,
    ApiJson(search): ApiJson<MemorySearch>,
) -> Result<Json<Vec<Memory>>, ApiError> {
    Ok(Json(
        runtime
            .memory_search(&search.query, search.limit.clamp(1, 100))
            .await?,
    ))
}

async fn store_memory(
    State(runtime): State<AgentRuntime>,
    ApiJson(memory): ApiJson<NewMemory>,
) -> Result<(StatusCode, Json<StoredMemory>), ApiError> {
    let stored = runtime.memory_store(memory).await?;
    let status = if stored.updated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stored)))
}

async fn get_memory(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
) -> Result<Json<Memory>, ApiError> {
    Ok(Json(runtime.memory_get(&id).await?))
}

async fn delete_memory(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    runtime.memory_delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Serve `router` on TCP `addr` until `shutdown` completes.
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Bind {
            path: PathBuf::from(addr.to_string()),
            source,
        })?;
    tracing::info!(%addr, "agent listening on TCP (token required)");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(AgentError::Serve)
}

/// A bound agent socket; the file is removed when it is served out.
#[derive(Debug)]
pub struct AgentSocket {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

impl AgentSocket {
    /// Create the socket at `path`, mode 0600.
    ///
    /// A socket at `path` that accepts connections belongs to a running agent:
    /// that is [`AgentError::AlreadyRunning`]. One that refuses is left over
    /// from a dead agent and is replaced. Anything else at `path` is left
    /// alone and is an error.
    pub async fn bind(path: &std::path::Path) -> Result<Self, AgentError> {
        let bind_error = |source| AgentError::Bind {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).await.is_ok() {
                    return Err(AgentError::AlreadyRunning(path.to_owned()));
                }
                std::fs::remove_file(path).map_err(bind_error)?;
            }
            Ok(_) => return Err(AgentError::NotASocket(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_error(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(bind_error)?;
        }
        // Only the owner may connect, from the first instant: umask around
        // bind, then an explicit chmod in case the umask was not honoured.
        let previous = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        umask(previous);
        let listener = bound.map_err(bind_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_error)?;
        let inode = std::fs::metadata(path).map_err(bind_error)?.ino();
        Ok(AgentSocket {
            listener,
            path: path.to_owned(),
            inode,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Serve `router` until `shutdown` completes and in-flight requests end,
    /// then remove the socket file (if it is still ours).
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        tracing::info!(socket = %self.path.display(), "agent listening");
        let result = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
        result.map_err(AgentError::Serve)
    }
}

mod jobs;
#[cfg(test)]
mod tests;

//! The agent's RPC server on a Unix socket.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use nix::sys::stat::{Mode, umask};
use ocg_core::{Embedder, HealthCheck, HealthReport, VERSION};
use tokio::net::{UnixListener, UnixStream};

use crate::AgentError;

/// What the agent's handlers share.
#[derive(Clone)]
pub struct AgentState {
    started: Instant,
    embedder: Option<Arc<dyn Embedder>>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("started", &self.started)
            .field("embedder", &self.embedder.is_some())
            .finish()
    }
}

impl AgentState {
    /// State whose health includes `embedder`'s (the embedding service).
    pub fn new(embedder: Option<Arc<dyn Embedder>>) -> Self {
        AgentState {
            started: Instant::now(),
            embedder,
        }
    }

    /// The agent's health: ok, or degraded when the embedder does not answer.
    pub async fn health(&self) -> HealthReport {
        let mut checks = Vec::new();
        if let Some(embedder) = &self.embedder {
            checks.push(match embedder.check().await {
                Ok(()) => HealthCheck::ok("embedding", None),
                Err(error) => HealthCheck::failing("embedding", error.to_string()),
            });
        }
        HealthReport::from_checks("agent", VERSION, self.started.elapsed().as_secs(), checks)
    }
}

/// The agent's routes: `GET /health`.
pub fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<Arc<AgentState>>) -> Json<HealthReport> {
    Json(state.health().await)
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
    pub async fn bind(path: &Path) -> Result<Self, AgentError> {
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
    pub fn path(&self) -> &Path {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use ocg_core::HealthStatus;
    use ocg_core::testing::DeterministicEmbedder;
    use tower::ServiceExt;

    struct DownEmbedder;

    #[async_trait::async_trait]
    impl Embedder for DownEmbedder {
        async fn embed(&self, _: &[String]) -> ocg_core::Result<Vec<Vec<f32>>> {
            Err(ocg_core::Error::unavailable(
                "embedding",
                "connection refused",
            ))
        }
        async fn info(&self) -> ocg_core::Result<ocg_core::EmbedderInfo> {
            Err(ocg_core::Error::unavailable(
                "embedding",
                "connection refused",
            ))
        }
    }

    async fn health_of(state: AgentState) -> HealthReport {
        let response = router(Arc::new(state))
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn health_tells_whether_embedding_answers() {
        let up = health_of(AgentState::new(Some(Arc::new(DeterministicEmbedder::new(
            8,
        )))))
        .await;
        assert_eq!(up.status, HealthStatus::Ok);
        let down = health_of(AgentState::new(Some(Arc::new(DownEmbedder)))).await;
        assert_eq!(down.status, HealthStatus::Degraded);
        assert_eq!(
            down.problems(),
            vec!["embedding: embedding unavailable: connection refused"]
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
            socket.serve(router(Arc::new(AgentState::new(None))), async {
                let _ = stopped.await;
            }),
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(!path.exists(), "socket file removed on shutdown");

        // A dead socket file is replaced; a regular file is not touched.
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
}

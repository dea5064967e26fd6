use std::path::PathBuf;

/// What can go wrong in the agent service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Another agent answers on the socket.
    #[error("an agent is already running on {}", .0.display())]
    AlreadyRunning(PathBuf),
    /// Something other than a socket is at the socket path; it is not removed.
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// The socket could not be created.
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the agent client: {0}")]
    Client(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

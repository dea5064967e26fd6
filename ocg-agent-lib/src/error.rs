use std::path::PathBuf;

/// What can go wrong in the agent.
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
    /// A file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the agent client: {0}")]
    Client(String),
    /// No session with that key.
    #[error("no session {0:?}")]
    SessionNotFound(String),
    /// The request is unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// The session database failed.
    #[cfg(feature = "runtime")]
    #[error("session store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The session store failed, or has no such session
    /// ([`ocg_core::Error::NotFound`]).
    #[error("{0}")]
    Sessions(ocg_core::Error),
    /// The model failed (code from the provider: `llm_rate_limited`, …).
    #[error("{message}")]
    Llm {
        /// Stable code.
        code: &'static str,
        /// What happened.
        message: String,
    },
    /// The local model could not be run.
    #[error("local model: {0}")]
    LocalModel(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// A tool refused or failed; returned to the model as a tool error.
    #[error("{message}")]
    Tool {
        /// Stable code (`path_outside_workspace`, `not_allowed`, …).
        code: &'static str,
        /// What happened, for the model.
        message: String,
    },
    /// The memory store (the embedding service) cannot be used now.
    #[error("memory is unavailable: {0}")]
    MemoryUnavailable(String),
    /// No memory with that id.
    #[error("no memory {0:?}")]
    MemoryNotFound(String),
    /// No scheduled job with that id.
    #[error("no job {0:?}")]
    JobNotFound(String),
    /// The job store failed ([`JobStore`](ocg_core::JobStore)).
    #[error("{0}")]
    Jobs(ocg_core::Error),
    /// `mcp.json` cannot be used.
    #[error("{}: {message}", path.display())]
    McpConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// A bug or a failed background task.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    /// Shorthand for [`AgentError::Tool`].
    pub fn tool(code: &'static str, message: impl Into<String>) -> Self {
        AgentError::Tool {
            code,
            message: message.into(),
        }
    }

    /// The stable code of this error in JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::SessionNotFound(_) | AgentError::Sessions(ocg_core::Error::NotFound(_)) => {
                "session_not_found"
            }
            AgentError::Sessions(ocg_core::Error::Unavailable { .. }) => "store_unavailable",
            AgentError::Sessions(_) => "store_error",
            AgentError::InvalidInput(_) => "invalid_input",
            #[cfg(feature = "runtime")]
            AgentError::Store(_) => "store_error",
            AgentError::LocalModel(_) => "llm_unavailable",
            AgentError::MemoryUnavailable(_) => "memory_unavailable",
            AgentError::MemoryNotFound(_) => "memory_not_found",
            AgentError::JobNotFound(_) | AgentError::Jobs(ocg_core::Error::NotFound(_)) => {
                "job_not_found"
            }
            AgentError::Jobs(ocg_core::Error::InvalidInput(_)) => "invalid_input",
            AgentError::Jobs(ocg_core::Error::Unavailable { .. }) => "store_unavailable",
            AgentError::Jobs(_) => "store_error",
            AgentError::McpConfig { .. } => "mcp_config_invalid",
            AgentError::Llm { code, .. } | AgentError::Tool { code, .. } => code,
            _ => "internal_error",
        }
    }
}

impl From<AgentError> for ocg_core::Error {
    fn from(error: AgentError) -> Self {
        match error {
            AgentError::SessionNotFound(key) => ocg_core::Error::NotFound(format!("session {key}")),
            AgentError::Sessions(error) | AgentError::Jobs(error) => error,
            AgentError::InvalidInput(message) => ocg_core::Error::InvalidInput(message),
            AgentError::MemoryNotFound(id) => ocg_core::Error::NotFound(format!("memory {id}")),
            AgentError::JobNotFound(id) => ocg_core::Error::NotFound(format!("job {id}")),
            AgentError::MemoryUnavailable(message) => {
                ocg_core::Error::unavailable("memory", message)
            }
            other => ocg_core::Error::Remote {
                code: other.code().to_owned(),
                message: other.to_string(),
            },
        }
    }
}

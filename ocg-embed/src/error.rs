use std::path::PathBuf;

/// What can go wrong in the embedding service.
///
/// Each variant has a stable [`code`](EmbedError::code) and, for the HTTP
/// API, a [`status`](EmbedError::status); handlers answer
/// `{"error":{"code","message"}}` with both.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// No port of the range could be bound.
    #[error("no free port from {first} to {last} on {host}: {last_error}")]
    NoFreePort {
        /// Bind address.
        host: String,
        /// First port tried.
        first: u16,
        /// Last port tried.
        last: u16,
        /// The last bind error.
        last_error: std::io::Error,
    },
    /// Another embedding service answers at the announced address.
    #[error("an embedding service is already running at {0}")]
    AlreadyRunning(String),
    /// The address file could not be written or read.
    #[error("{}: {source}", path.display())]
    AddressFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The request is unusable; nothing was stored.
    #[error("{message}")]
    InvalidInput {
        /// Stable code (`invalid_input`, `invalid_vector`, `empty_text`, …).
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// A text is longer than the model takes in one piece.
    #[error("text {index} is {tokens} tokens long; the model takes at most {max} (split it)")]
    TooLong {
        /// Position of the text in the request.
        index: usize,
        /// Its length in tokens.
        tokens: usize,
        /// The limit.
        max: usize,
    },
    /// The named collection does not exist.
    #[error("collection {0:?} does not exist")]
    UnknownCollection(String),
    /// The named item does not exist.
    #[error("item {id:?} does not exist in collection {collection:?}")]
    UnknownItem {
        /// Collection.
        collection: String,
        /// Item id.
        id: String,
    },
    /// The collection's vectors were made by another model (or have another
    /// length) than the current embedder's: re-index it.
    #[error(
        "collection {collection:?} holds {stored}-dimensional vectors from {stored_model}, but the embedder now makes {current}-dimensional vectors with {current_model}; re-index it with `ocg-embedding reindex --collection {collection}` or POST /collections/{collection}/reindex"
    )]
    DimensionMismatch {
        /// Collection.
        collection: String,
        /// Its dimension.
        stored: usize,
        /// The model its texts were embedded with.
        stored_model: String,
        /// The embedder's dimension.
        current: usize,
        /// The embedder's model.
        current_model: String,
    },
    /// Re-indexing is impossible as asked.
    #[error("{0}")]
    Conflict(String),
    /// The embedder (llama-server) is not ready or failed.
    #[error("embedder unavailable: {0}")]
    EmbedderUnavailable(String),
    /// The SQLite store failed.
    #[cfg(feature = "export")]
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The FAISS index failed.
    #[cfg(feature = "server")]
    #[error("vector index: {0}")]
    Index(#[from] faiss::error::Error),
    /// A file of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The request has no valid bearer token.
    #[error(
        "this route needs the embedding service's token (OCG_EMBEDDING_TOKEN) as `Authorization: Bearer <token>`"
    )]
    Unauthorized,
    /// The request's `Host` is not a loopback name: a browser page on
    /// another origin (DNS rebinding) or a misdirected client.
    #[error("the Host header must name this machine's loopback (127.0.0.1, [::1] or localhost)")]
    ForbiddenHost,
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EmbedError {
    /// Shorthand for [`EmbedError::InvalidInput`].
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        EmbedError::InvalidInput {
            code,
            message: message.into(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EmbedError::NoFreePort { .. } => "no_free_port",
            EmbedError::AlreadyRunning(_) => "already_running",
            EmbedError::AddressFile { .. } | EmbedError::Io { .. } => "io",
            EmbedError::Serve(_) => "serve",
            EmbedError::InvalidInput { code, .. } => code,
            EmbedError::TooLong { .. } => "input_too_long",
            EmbedError::UnknownCollection(_) => "collection_not_found",
            EmbedError::UnknownItem { .. } => "not_found",
            EmbedError::DimensionMismatch { .. } => "dimension_mismatch",
            EmbedError::Conflict(_) => "conflict",
            EmbedError::EmbedderUnavailable(_) => "embedder_unavailable",
            #[cfg(feature = "export")]
            EmbedError::Store(_) => "store",
            #[cfg(feature = "server")]
            EmbedError::Index(_) => "index",
            EmbedError::Unauthorized => "unauthorized",
            EmbedError::ForbiddenHost => "forbidden_host",
            EmbedError::Internal(_) => "internal",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            EmbedError::InvalidInput { code, .. } if *code == ocg_core::body::PAYLOAD_TOO_LARGE => {
                413
            }
            EmbedError::InvalidInput { .. } | EmbedError::TooLong { .. } => 400,
            EmbedError::Unauthorized => 401,
            EmbedError::ForbiddenHost => 403,
            EmbedError::UnknownCollection(_) | EmbedError::UnknownItem { .. } => 404,
            EmbedError::DimensionMismatch { .. } | EmbedError::Conflict(_) => 409,
            EmbedError::EmbedderUnavailable(_) => 503,
            _ => 500,
        }
    }
}

impl From<ocg_core::Error> for EmbedError {
    fn from(error: ocg_core::Error) -> Self {
        match error {
            ocg_core::Error::InvalidInput(message) => EmbedError::invalid("invalid_input", message),
            ocg_core::Error::Remote { code, message } if code == "input_too_long" => {
                EmbedError::invalid("input_too_long", message)
            }
            other => EmbedError::EmbedderUnavailable(other.to_string()),
        }
    }
}

/// `{"error":{"code","message","type"}}` with the error's status
/// (OpenAI's shape, so its SDKs show the message).
#[cfg(feature = "server")]
impl axum::response::IntoResponse for EmbedError {
    fn into_response(self) -> axum::response::Response {
        use axum::Json;
        use axum::http::StatusCode;
        use serde_json::json;
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        }
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        };
        let body = json!({
            "error": { "code": self.code(), "message": self.to_string(), "type": kind, "param": null }
        });
        (status, Json(body)).into_response()
    }
}

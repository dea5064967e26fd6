use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The address is taken (another gateway, or something else).
    #[error("cannot listen on {addr}: {source} (is another gateway running?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A non-loopback bind without explicit consent.
    #[error("refusing to listen on non-loopback {0}; set OCG_ALLOW_PUBLIC_BIND=true to allow it")]
    PublicBind(SocketAddr),
    /// The OS random generator failed.
    #[error("cannot read random bytes: {0}")]
    Random(String),
    /// Config could not be read or written.
    #[error(transparent)]
    Config(#[from] ocg_core::ConfigError),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// A channel could not be set up (the message never holds a token).
    #[error("channel: {0}")]
    Channel(String),
    /// A channel's journal could not be read or written.
    #[error("channel journal {}: {source}", path.display())]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An error answer. On `/v1/*` it has OpenAI's shape
/// (`{"error":{"message","type","code"}}`), elsewhere `{"error":{"code","message"}}`;
/// both carry the stable `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// For a person.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required (Authorization: Bearer, X-OCG-UI-Token, or the login cookie)",
        )
    }

    /// 429 after too many failed attempts.
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed attempts; wait a minute",
        )
    }

    /// The OpenAI error `type` for this status.
    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 | 403 => "authentication_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.openai_type(),
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ocg_core::Error> for ApiError {
    fn from(error: ocg_core::Error) -> Self {
        let status =
            StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, error.code(), error.to_string())
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            error.to_string(),
        )
    }
}

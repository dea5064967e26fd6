//! The one error type crossing trait boundaries.

use crate::config::ConfigError;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong behind a trait of this crate.
///
/// Every variant has a stable machine-readable [`code`](Error::code); services
/// put that code into their JSON errors so clients can branch on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller sent something unusable; retrying the same input fails again.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A service this call depends on cannot be reached or is not ready.
    #[error("{service} unavailable: {message}")]
    Unavailable {
        /// Which service (`agent`, `embedding`, a provider's name, …).
        service: String,
        /// Why, for a person.
        message: String,
    },
    /// The thing named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The implementation does not offer this operation.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The caller went away or asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// A remote side answered with an error of its own, code kept as sent.
    #[error("{message} ({code})")]
    Remote {
        /// The remote's stable code.
        code: String,
        /// The remote's message.
        message: String,
    },
    /// Config could not be read or validated.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An operating-system error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The stable code of this error, as used in JSON error bodies.
    pub fn code(&self) -> &str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::Unavailable { .. } => "unavailable",
            Error::NotFound(_) => "not_found",
            Error::Unsupported(_) => "unsupported",
            Error::Timeout(_) => "timeout",
            Error::Cancelled => "cancelled",
            Error::Remote { code, .. } => code,
            Error::Config(_) => "config",
            Error::Io(_) => "io",
        }
    }

    /// The HTTP status every OCG service answers this error with: 400 for
    /// bad input, 404, 501, 503 for a dependency that is down, 504, 502 for
    /// a model vendor's failure, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidInput(_) => 400,
            Error::NotFound(_) => 404,
            Error::Unsupported(_) => 501,
            Error::Unavailable { .. } => 503,
            Error::Timeout(_) => 504,
            Error::Remote { code, .. } if code.starts_with("llm_") => 502,
            _ => 500,
        }
    }

    /// Shorthand for [`Error::Unavailable`].
    pub fn unavailable(service: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Unavailable {
            service: service.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(Error::InvalidInput("x".into()).code(), "invalid_input");
        assert_eq!(Error::unavailable("agent", "down").code(), "unavailable");
        let remote = Error::Remote {
            code: "rate_limited".into(),
            message: "slow down".into(),
        };
        assert_eq!(remote.code(), "rate_limited");
        assert_eq!(remote.to_string(), "slow down (rate_limited)");
    }

    #[test]
    fn statuses_follow_the_table() {
        let llm = Error::Remote {
            code: "llm_rate_limited".into(),
            message: "m".into(),
        };
        let other = Error::Remote {
            code: "store".into(),
            message: "m".into(),
        };
        let cases = [
            (Error::InvalidInput("x".into()), 400),
            (Error::NotFound("x".into()), 404),
            (Error::Unsupported("x".into()), 501),
            (Error::unavailable("memory", "down"), 503),
            (Error::Timeout("x".into()), 504),
            (llm, 502),
            (other, 500),
            (Error::Cancelled, 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.http_status(), status, "{error}");
        }
    }
}

/// The stable codes of a rejected request body, the same in every service.
pub mod body {
    /// Over the service's size limit (status 413).
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// Not `application/json` (status 415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// Not UTF-8, not JSON, or not the expected shape (status 400).
    pub const INVALID_JSON: &str = "invalid_json";

    /// The status and code to answer a body rejected with `status` by the
    /// HTTP framework.
    pub fn rejection(status: u16) -> (u16, &'static str) {
        match status {
            413 => (413, PAYLOAD_TOO_LARGE),
            415 => (415, UNSUPPORTED_MEDIA_TYPE),
            _ => (400, INVALID_JSON),
        }
    }
}

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
}

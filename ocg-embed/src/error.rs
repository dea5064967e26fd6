use std::path::PathBuf;

/// What can go wrong in the embedding service.
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
}

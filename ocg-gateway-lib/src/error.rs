use std::net::SocketAddr;

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
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

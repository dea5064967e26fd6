//! Connections: `OCG_DATABASE_URL` read into a pool, with TLS where the
//! database is on another machine.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};

use crate::PgError;

/// Connections in the pool at most.
pub const POOL_SIZE: usize = 16;
/// How long a connection may take to open, and a caller may wait for one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A statement running longer is cancelled by the server.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// A pool of connections to `url` (`postgres://user:password@host/db`, or
/// the `key=value` form). A database on another machine needs
/// `sslmode=require`, and its certificate is verified against the system's
/// roots (rustls): the password and the data never cross a network in the
/// clear.
pub fn connect(url: &str) -> Result<Pool, PgError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Config(e.to_string()))?;
    if config.get_hosts().is_empty() {
        return Err(PgError::Config("no host".into()));
    }
    let remote = config.get_hosts().iter().any(|h| !is_loopback(h));
    if remote && config.get_ssl_mode() != SslMode::Require {
        return Err(PgError::Config(
            "a database on another machine needs sslmode=require (the certificate is verified)"
                .into(),
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_options().is_none() {
        // The server probes an idle connection after 10 s and drops it after
        // three unanswered probes 5 s apart: the session locks of an agent
        // whose machine vanished are free within about 25 s, not the
        // system's default two hours.
        config.options(format!(
            "-c statement_timeout={} -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
            STATEMENT_TIMEOUT.as_millis()
        ));
    }
    // The same from this side, for a database that vanishes.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10));
    if config.get_application_name().is_none() {
        config.application_name("ocg");
    }
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()?);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| PgError::Pool(e.to_string()))
}

fn tls_config() -> Result<rustls::ClientConfig, PgError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| PgError::Tls(format!("certificate roots: {e}")))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_database_needs_tls_and_the_password_is_never_shown() {
        let error = connect("postgres://ocg:hunter2@db.example.org/ocg")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sslmode=require"), "{error}");
        assert!(!error.contains("hunter2"));
        assert!(connect("postgres://ocg:hunter2@db.example.org/ocg?sslmode=require").is_ok());
        assert!(connect("postgres://ocg@127.0.0.1:5432/ocg").is_ok());
        assert!(connect("host=/run/postgresql dbname=ocg").is_ok());
        let error = connect("postgres://ocg:hunter2@[::1:bad/ocg")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}

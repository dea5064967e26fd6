//! # ocg-postgres: PostgreSQL as OCG's shared store
//!
//! One machine with SQLite and FAISS is OCG's default. When several
//! machines share one assistant, `OCG_DATABASE_URL=postgres://…` moves the
//! durable state into PostgreSQL, which replication and managed offerings
//! already make highly available. What lives here so far:
//!
//! - [`connect`]: a pool (`deadpool-postgres` over `tokio-postgres`), with
//!   TLS (rustls, certificates verified) required toward other machines,
//!   connect and statement timeouts;
//! - [`migrate`](migrate::migrate): versioned migrations, applied at start,
//!   safe when several processes start at once;
//! - [`PgVectorStore`]: the agent's memories (any [`VectorStore`]
//!   collections) on pgvector, with HNSW indexes, cosine scores, JSONB
//!   filters and the same hybrid search as the embedding service;
//! - [`PgSessionStore`]: sessions and their history ([`SessionStore`]),
//!   with each session's turns serialized across every agent of the
//!   database by an advisory lock;
//! - [`PgChannelState`]: the gateways' channel journals and the lease that
//!   lets one gateway at a time run the channels ([`ChannelStateStore`]).
//!
//! - [`PgJobStore`]: scheduled jobs, their runs and deliveries
//!   ([`JobStore`]), each occurrence claimed once by any agent of the
//!   database.
//!
//! [`VectorStore`]: ocg_core::VectorStore
//! [`SessionStore`]: ocg_core::SessionStore
//! [`ChannelStateStore`]: ocg_core::ChannelStateStore
//! [`JobStore`]: ocg_core::JobStore
#![warn(missing_docs)]

mod channel_state;
mod error;
mod jobs;
pub mod migrate;
mod pool;
mod sessions;
mod vectors;

pub use channel_state::PgChannelState;
pub use deadpool_postgres::Pool;
pub use error::PgError;
pub use jobs::PgJobStore;
pub use pool::{CONNECT_TIMEOUT, POOL_SIZE, STATEMENT_TIMEOUT, connect};
pub use sessions::PgSessionStore;
pub use vectors::{EF_SEARCH, HYBRID_POOL, POSTINGS_BUDGET, PgVectorStore, valid_collection_name};

/// Connect to `url` and bring its schema up to date: what a service does
/// at start with `OCG_DATABASE_URL`.
pub async fn open(url: &str) -> Result<Pool, PgError> {
    let pool = connect(url)?;
    migrate::migrate(&pool).await?;
    Ok(pool)
}

/// Connect to `url` now and bring its schema up to date in the background,
/// retrying with backoff (up to 30 s apart) while the database is down: what
/// a service does that must start, and answer "unavailable", before its
/// database is back.
pub fn open_in_background(url: &str) -> Result<Pool, PgError> {
    let pool = connect(url)?;
    let migrating = pool.clone();
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_millis(500);
        loop {
            match migrate::migrate(&migrating).await {
                Ok(_) => {
                    tracing::info!("PostgreSQL store ready (OCG_DATABASE_URL)");
                    return;
                }
                Err(e) => {
                    tracing::warn!("PostgreSQL store not ready, retrying: {e}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    });
    Ok(pool)
}

/// `OCG_DATABASE_URL` of `config`, trimmed: the shared store every agent
/// and gateway of it uses (`None`: each keeps its own SQLite and files).
pub fn database_url(
    config: &ocg_core::config::Config,
) -> Result<Option<ocg_core::config::Secret>, ocg_core::ConfigError> {
    config.raw().parse("OCG_DATABASE_URL", |v| {
        Ok(ocg_core::config::Secret::new(v.trim()))
    })
}

/// The database a migration copies into: `to` (a `--to` flag), or else
/// [`database_url`].
pub fn migration_target(
    to: Option<String>,
    config: &ocg_core::config::Config,
) -> Result<String, PgError> {
    match to {
        Some(url) => Ok(url),
        None => database_url(config)
            .map_err(|e| PgError::Config(e.to_string()))?
            .map(|url| url.expose().to_owned())
            .ok_or_else(|| {
                PgError::Config("say where to: --to postgres://… or OCG_DATABASE_URL".into())
            }),
    }
}

/// Unix time in milliseconds, as every table stores it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

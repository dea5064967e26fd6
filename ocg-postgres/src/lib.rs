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
//!   database by an advisory lock.
//!
//! Channel state and scheduled jobs still live in each machine's SQLite
//! (`docs/deploy.md` says what that means for several machines).
//!
//! [`VectorStore`]: ocg_core::VectorStore
//! [`SessionStore`]: ocg_core::SessionStore
#![warn(missing_docs)]

mod error;
pub mod migrate;
mod pool;
mod sessions;
mod vectors;

pub use deadpool_postgres::Pool;
pub use error::PgError;
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

/// Unix time in milliseconds, as every table stores it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

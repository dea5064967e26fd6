//! `ocg-agent migrate` (and `ocg migrate`): copy a single-machine install's
//! sessions, scheduled jobs and memories into PostgreSQL, for the agents of
//! a shared store.
//!
//! Sessions come from the agent's SQLite database through the
//! [`SessionStore`] trait, with their turns, archive flags, times and latest
//! summary; jobs through the [`JobStore`] trait, with their schedules'
//! anchors, failure counts and next runs (not their past runs, or replies
//! still waiting for delivery); memories come from the embedding service's database with their
//! vectors, so nothing is embedded again. The agent must be stopped (its
//! data dir is locked while it runs); the embedding service may run. A
//! second run copies what the first did not: sessions and jobs already in
//! PostgreSQL are left as they are, memories are replaced by id.

use std::sync::Arc;

use anyhow::Context;
use ocg_agent_lib::memory::COLLECTION;
use ocg_agent_lib::schedule::{MAX_JOBS, SqliteJobStore};
use ocg_agent_lib::sessions::{SessionStore, SqliteSessionStore};
use ocg_agent_lib::settings::AgentSettings;
use ocg_core::config::Config;
use ocg_core::{JobStore, VectorStore};
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};
use ocg_postgres::{PgJobStore, PgSessionStore, PgVectorStore};

/// Memories upserted at a time.
const MEMORY_BATCH: usize = 500;

/// Copy the install of `config` into the database at `url`.
pub async fn run(config: &Config, url: &str) -> anyhow::Result<()> {
    let settings = AgentSettings::from_config(config)?;
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "agent")
        .context("the agent must be stopped first (`ocg stop`)")?;
    let pool = ocg_postgres::open(url).await?;

    let source = SqliteSessionStore::open(&settings.database)?;
    let target = PgSessionStore::new(pool.clone());
    let (mut copied, mut present, mut messages) = (0usize, 0usize, 0usize);
    for info in source.list().await? {
        let history = source.history(&info.key, 0, u64::MAX, true).await?;
        let summary = source.context(&info.key).await?.summary;
        if target.import(&info, &history, summary.as_deref()).await? {
            copied += 1;
            messages += history.len();
        } else {
            present += 1;
        }
    }
    println!("sessions: {copied} copied ({messages} messages), {present} already in PostgreSQL");

    let (source, target) = (
        SqliteJobStore::open(&settings.database)?,
        PgJobStore::new(pool.clone()),
    );
    let (mut copied, mut present) = (0usize, 0usize);
    for job in source.jobs().await? {
        match target.job(&job.id).await {
            Ok(_) => present += 1,
            Err(ocg_core::Error::NotFound(_)) => {
                target
                    .insert_job(&source.job(&job.id).await?, MAX_JOBS)
                    .await?;
                copied += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    println!("jobs: {copied} copied, {present} already in PostgreSQL");

    let database = config.data_dir.join("embeddings.db");
    let memories = if database.exists() {
        ocg_embed::export::collection_items(&database, COLLECTION)?
    } else {
        Vec::new()
    };
    // Every memory carries its vector: the embedder is never asked.
    let (token, _) = ocg_process::secrets::ensure_token(config, ocg_embed::TOKEN_KEY)?;
    let embedder = Arc::new(EmbeddingClient::new(
        EmbeddingEndpoint::Announced(AddressFile::new(config.embedding_addr_file())),
        &token,
    ));
    let store = PgVectorStore::new(pool, embedder);
    for batch in memories.chunks(MEMORY_BATCH) {
        store.upsert(COLLECTION, batch).await?;
    }
    println!("memories: {} copied with their vectors", memories.len());
    Ok(())
}

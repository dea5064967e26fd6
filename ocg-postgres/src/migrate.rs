//! Versioned migrations, applied at start: each in its own transaction
//! with its version recorded, all under one advisory lock, so two
//! processes starting at once apply each step exactly once (the second
//! waits, then finds it done), and a step that fails leaves nothing of
//! itself behind.

use deadpool_postgres::Pool;

use crate::PgError;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version: steps run in this order, each once.
    pub version: i64,
    /// What it does.
    pub name: &'static str,
    /// Its statements.
    pub sql: &'static str,
}

/// The key of the advisory lock migrations run under.
const LOCK: i64 = 0x6f63_675f_6d69_6772; // "ocg_migr"

/// Every step, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "vector collections on pgvector, with full-text search",
    sql: "
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE ocg_collections (
    name TEXT PRIMARY KEY,
    dimension INTEGER NOT NULL CHECK (dimension > 0),
    created_at_ms BIGINT NOT NULL
);
CREATE SEQUENCE ocg_items_seq;
CREATE TABLE ocg_items (
    collection TEXT NOT NULL REFERENCES ocg_collections (name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT nextval('ocg_items_seq'),
    text TEXT,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    embedding vector NOT NULL,
    words tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(text, ''))) STORED,
    PRIMARY KEY (collection, id)
);
CREATE INDEX ocg_items_recent ON ocg_items (collection, seq DESC);
CREATE INDEX ocg_items_words ON ocg_items USING gin (words);
CREATE INDEX ocg_items_metadata ON ocg_items USING gin (metadata jsonb_path_ops);
",
}];

/// Bring the database up to [`MIGRATIONS`]; the versions applied now.
pub async fn migrate(pool: &Pool) -> Result<Vec<i64>, PgError> {
    let mut client = pool.get().await?;
    // A session lock, held across the steps' transactions.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let result = apply(&mut client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut deadpool_postgres::Client) -> Result<Vec<i64>, PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ocg_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let done: Vec<i64> = client
        .query("SELECT version FROM ocg_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for step in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(step.sql).await?;
        tx.execute(
            "INSERT INTO ocg_migrations (version, name) VALUES ($1, $2)",
            &[&step.version, &step.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = step.version,
            name = step.name,
            "PostgreSQL schema migrated"
        );
        applied.push(step.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_are_unique() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions[0], 1);
    }
}

//! [`PgChannelState`]: the [`ChannelStateStore`] contract in PostgreSQL,
//! shared by every gateway of the database.
//!
//! Leases are rows of `ocg_leases` whose expiry is set and judged by the
//! server's clock (`now()`), so gateways never compare clocks. Journals
//! are rows of `ocg_journal`, ordered by a sequence. A write to a journal
//! locks its fence's lease row (`FOR SHARE`) in the same statement or
//! transaction, so a lease cannot change hands while a write under it is
//! being made, and a write whose lease is gone changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use ocg_core::{ChannelStateStore, Fence};
use serde_json::Value;

use crate::PgError;

/// The channels' leases and journals in PostgreSQL.
#[derive(Clone)]
pub struct PgChannelState {
    pool: Pool,
}

impl std::fmt::Debug for PgChannelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChannelState").finish_non_exhaustive()
    }
}

fn lease_lost(fence: &Fence) -> ocg_core::Error {
    ocg_core::Error::unavailable(
        "channels",
        format!("this gateway no longer holds the lease {:?}", fence.lease),
    )
}

impl PgChannelState {
    /// Channel state in the database of `pool` (migrated by
    /// [`open`](crate::open)).
    pub fn new(pool: Pool) -> Self {
        PgChannelState { pool }
    }
}

#[async_trait]
impl ChannelStateStore for PgChannelState {
    async fn take_lease(&self, lease: &str, holder: &str, ttl: Duration) -> ocg_core::Result<bool> {
        let client = self.pool.get().await.map_err(PgError::from)?;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let taken = client
            .query_opt(
                "INSERT INTO ocg_leases (name, holder, expires_at)
                 VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE
                     SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE ocg_leases.holder = excluded.holder OR ocg_leases.expires_at < now()
                 RETURNING holder",
                &[&lease, &holder, &ttl_ms],
            )
            .await
            .map_err(PgError::from)?;
        Ok(taken.is_some())
    }

    async fn release_lease(&self, lease: &str, holder: &str) -> ocg_core::Result<()> {
        let client = self.pool.get().await.map_err(PgError::from)?;
        client
            .execute(
                "DELETE FROM ocg_leases WHERE name = $1 AND holder = $2",
                &[&lease, &holder],
            )
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn read_journal(&self, name: &str) -> ocg_core::Result<Vec<Value>> {
        let client = self.pool.get().await.map_err(PgError::from)?;
        let rows = client
            .query(
                "SELECT record FROM ocg_journal WHERE name = $1 ORDER BY seq",
                &[&name],
            )
            .await
            .map_err(PgError::from)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn append_journal(
        &self,
        name: &str,
        fence: &Fence,
        records: &[Value],
    ) -> ocg_core::Result<()> {
        let client = self.pool.get().await.map_err(PgError::from)?;
        let records = Value::Array(records.to_vec());
        // The fence, the records and their order in one statement.
        let row = client
            .query_one(
                "WITH fence AS (
                    SELECT 1 FROM ocg_leases
                    WHERE name = $2 AND holder = $3 AND expires_at > now() FOR SHARE
                 ), added AS (
                    INSERT INTO ocg_journal (name, record)
                    SELECT $1, r.record FROM fence, jsonb_array_elements($4::jsonb)
                        WITH ORDINALITY AS r (record, n)
                    ORDER BY r.n
                    RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM added)",
                &[&name, &fence.lease, &fence.holder, &records],
            )
            .await
            .map_err(PgError::from)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(lease_lost(fence));
        }
        Ok(())
    }

    async fn replace_journal(
        &self,
        name: &str,
        fence: &Fence,
        records: &[Value],
    ) -> ocg_core::Result<()> {
        let mut client = self.pool.get().await.map_err(PgError::from)?;
        let tx = client.transaction().await.map_err(PgError::from)?;
        let held = tx
            .query_opt(
                "SELECT 1 FROM ocg_leases
                 WHERE name = $1 AND holder = $2 AND expires_at > now() FOR SHARE",
                &[&fence.lease, &fence.holder],
            )
            .await
            .map_err(PgError::from)?;
        if held.is_none() {
            return Err(lease_lost(fence));
        }
        tx.execute("DELETE FROM ocg_journal WHERE name = $1", &[&name])
            .await
            .map_err(PgError::from)?;
        let records = Value::Array(records.to_vec());
        tx.execute(
            "INSERT INTO ocg_journal (name, record)
             SELECT $1, r.record FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS r (record, n)
             ORDER BY r.n",
            &[&name, &records],
        )
        .await
        .map_err(PgError::from)?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(())
    }
}

//! [`PgVectorStore`]: the [`VectorStore`] contract on pgvector.
//!
//! All collections share one table (`ocg_items`); each collection gets its
//! own partial HNSW index over `embedding::vector(<dimension>)` with cosine
//! distance, created with the collection, so a search of one collection
//! walks its own graph. Scores are cosine similarities (`1 - <=>`). Hybrid
//! search keeps the meaning of [`ocg_core::hybrid`], with Postgres
//! full-text search (`to_tsvector('simple', text)`, a GIN index) in place
//! of SQLite's FTS5. Metadata filters are JSONB containment, searched with
//! pgvector's iterative index scans so a selective filter still fills
//! `top_k`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use ocg_core::hybrid;
use ocg_core::{Embedder, SearchHit, SearchQuery, SearchRequest, VectorItem, VectorStore};
use pgvector::Vector;
use serde_json::{Map, Value};
use tokio_postgres::Row;

use crate::{PgError, now_ms};

/// A hybrid search considers at least this many candidates by vector and
/// as many by keyword (as the embedding service does).
pub const HYBRID_POOL: usize = 50;
/// A hybrid search reads the postings of at most this many rows.
pub const POSTINGS_BUDGET: i64 = 2_000;
/// An upsert of this many items refreshes the planner's statistics.
const ANALYZE_AFTER: usize = 500;
/// The HNSW graph's parameters: the embedding service's FAISS graph has
/// M 32 and efSearch 64 (efConstruction 40 there; pgvector wants at least
/// twice M).
const HNSW_M: u32 = 32;
const HNSW_EF_CONSTRUCTION: u32 = 64;
/// Candidates a search keeps (`hnsw.ef_search`), at least.
pub const EF_SEARCH: usize = 64;

/// A collection name ([`valid_collection_name`], the embedding service's
/// rule): only such names are ever written into a statement.
pub use ocg_core::valid_collection_name;

fn checked(name: &str) -> Result<&str, PgError> {
    if valid_collection_name(name) {
        Ok(name)
    } else {
        Err(PgError::Invalid(format!(
            "{name:?} is not a collection name (1-64 of A-Z a-z 0-9 _ - .)"
        )))
    }
}

/// A stable 64-bit key of `name` (FNV-1a), for its index name and lock.
fn key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Memories (any collections) in PostgreSQL with pgvector.
#[derive(Clone)]
pub struct PgVectorStore {
    pool: Pool,
    embedder: Arc<dyn Embedder>,
    ef_search: usize,
}

impl std::fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVectorStore").finish_non_exhaustive()
    }
}

fn hit(row: &Row) -> SearchHit {
    let metadata: Value = row.get("metadata");
    let score: f64 = row.get("score");
    SearchHit {
        id: row.get("id"),
        score: (score as f32).clamp(-1.0, 1.0),
        text: row.get("text"),
        metadata: match metadata {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

fn item(row: &Row) -> VectorItem {
    let metadata: Value = row.get("metadata");
    VectorItem {
        id: row.get("id"),
        text: row.get("text"),
        vector: None,
        metadata: match metadata {
            Value::Object(map) => map,
            _ => Map::new(),
        },
    }
}

impl PgVectorStore {
    /// A store on `pool` (migrated with [`crate::migrate`]), embedding texts
    /// with `embedder`.
    pub fn new(pool: Pool, embedder: Arc<dyn Embedder>) -> Self {
        PgVectorStore {
            pool,
            embedder,
            ef_search: EF_SEARCH,
        }
    }

    /// Keep at least `ef_search` candidates per search (default
    /// [`EF_SEARCH`]): more is slower and finds more of the true nearest.
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search.clamp(1, 1000);
        self
    }

    /// The dimension of `collection`, when it exists.
    async fn dimension(&self, collection: &str) -> Result<Option<i32>, PgError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT dimension FROM ocg_collections WHERE name = $1",
                &[&collection],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn upsert_items(&self, collection: &str, items: &[VectorItem]) -> Result<(), PgError> {
        let name = checked(collection)?;
        if items.is_empty() {
            return Ok(());
        }
        // Texts without a vector are embedded, in one batch.
        let to_embed: Vec<String> = items
            .iter()
            .filter(|i| i.vector.is_none())
            .map(|i| {
                i.text.clone().ok_or_else(|| {
                    PgError::Invalid(format!("item {:?} has neither text nor vector", i.id))
                })
            })
            .collect::<Result<_, _>>()?;
        let mut embedded = if to_embed.is_empty() {
            Vec::new()
        } else {
            self.embedder
                .embed(&to_embed)
                .await
                .map_err(PgError::Embed)?
        }
        .into_iter();
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let vector = match &item.vector {
                Some(vector) => vector.clone(),
                None => embedded.next().ok_or_else(|| {
                    PgError::Embed(ocg_core::Error::unavailable(
                        "embedder",
                        "returned too few vectors",
                    ))
                })?,
            };
            let norm: f64 = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            if vector.iter().any(|x| !x.is_finite()) || norm == 0.0 {
                return Err(PgError::Invalid(format!(
                    "item {:?}: a vector must be finite and not zero",
                    item.id
                )));
            }
            rows.push((item, vector));
        }
        let dimension = rows[0].1.len();
        if rows.iter().any(|(_, v)| v.len() != dimension) {
            return Err(PgError::Invalid(
                "vectors of one upsert differ in length".into(),
            ));
        }
        let dimension = i32::try_from(dimension)
            .ok()
            .filter(|d| *d <= 16_000)
            .ok_or_else(|| PgError::Invalid("vectors longer than 16,000".into()))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key(name)])
            .await?;
        let existing: Option<i32> = tx
            .query_opt(
                "SELECT dimension FROM ocg_collections WHERE name = $1",
                &[&name],
            )
            .await?
            .map(|r| r.get(0));
        match existing {
            Some(d) if d != dimension => {
                return Err(PgError::Invalid(format!(
                    "collection {name:?} holds vectors of {d}, not {dimension}"
                )));
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO ocg_collections (name, dimension, created_at_ms) VALUES ($1, $2, $3)",
                    &[&name, &dimension, &now_ms()],
                )
                .await?;
                // The name is checked: only `A-Z a-z 0-9 _ - .` reach the statement.
                tx.batch_execute(&format!(
                    "CREATE INDEX IF NOT EXISTS ocg_hnsw_{index:016x} ON ocg_items
                     USING hnsw ((embedding::vector({dimension})) vector_cosine_ops)
                     WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})
                     WHERE collection = '{name}'",
                    index = key(name) as u64,
                ))
                .await?;
            }
        }
        let upsert = tx
            .prepare(
                "INSERT INTO ocg_items (collection, id, text, metadata, embedding)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (collection, id) DO UPDATE SET
                     seq = nextval('ocg_items_seq'), text = EXCLUDED.text,
                     metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding",
            )
            .await?;
        for (item, vector) in rows {
            let metadata = Value::Object(item.metadata.clone());
            tx.execute(
                &upsert,
                &[
                    &name,
                    &item.id,
                    &item.text,
                    &metadata,
                    &Vector::from(vector),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        if items.len() >= ANALYZE_AFTER {
            // Fresh statistics, so the planner knows the collection is large
            // and walks its graph (autovacuum would, later).
            client.batch_execute("ANALYZE ocg_items").await?;
        }
        Ok(())
    }

    /// The `limit` nearest items of `collection` (of `dimension`) to
    /// `query` that match `filter`, best first.
    async fn nearest(
        &self,
        name: &str,
        dimension: i32,
        query: &[f32],
        limit: usize,
        filter: &Map<String, Value>,
    ) -> Result<Vec<SearchHit>, PgError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let ef = limit.clamp(self.ef_search, 1000);
        tx.batch_execute(&format!(
            "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = strict_order"
        ))
        .await?;
        // The literal collection and dimension let the planner use the
        // collection's partial index; an empty filter is left out, since
        // the planner takes any containment test for a selective one and
        // would then sort the whole collection instead of walking the graph.
        let vector = Vector::from(query.to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let filter = Value::Object(filter.clone());
        let (condition, params): (&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) =
            if filter.as_object().is_some_and(Map::is_empty) {
                ("", vec![&vector, &limit])
            } else {
                (" AND metadata @> $3", vec![&vector, &limit, &filter])
            };
        let rows = tx
            .query(
                &format!(
                    "SELECT id, text, metadata,
                         1 - (embedding::vector({dimension}) <=> $1::vector({dimension})) AS score
                     FROM ocg_items
                     WHERE collection = '{name}'{condition}
                     ORDER BY embedding::vector({dimension}) <=> $1::vector({dimension})
                     LIMIT $2"
                ),
                &params,
            )
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(hit).collect())
    }

    /// A hybrid search (see [`ocg_core::hybrid`]).
    #[allow(clippy::too_many_arguments)]
    async fn hybrid(
        &self,
        name: &str,
        dimension: i32,
        query: &[f32],
        text: &str,
        top_k: usize,
        filter: &Map<String, Value>,
    ) -> Result<Vec<SearchHit>, PgError> {
        let tokens = hybrid::query_tokens(text);
        let pool = top_k.max(HYBRID_POOL);
        let by_vector = self.nearest(name, dimension, query, pool, filter).await?;
        if tokens.is_empty() {
            return Ok(by_vector);
        }
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM ocg_items WHERE collection = $1",
                &[&name],
            )
            .await?
            .get(0);
        let count = client
            .prepare(
                "SELECT count(*) FROM ocg_items
                 WHERE collection = $1 AND words @@ plainto_tsquery('simple', $2)",
            )
            .await?;
        let mut counted = Vec::with_capacity(tokens.len());
        for token in tokens {
            let everywhere: i64 = client.query_one(&count, &[&name, &token]).await?.get(0);
            // A token no text holds cannot tell items apart.
            if everywhere > 0 {
                counted.push((token, everywhere));
            }
        }
        counted.sort_by_key(|(_, everywhere)| *everywhere);
        let postings = client
            .prepare(
                "SELECT id FROM ocg_items
                 WHERE collection = $1 AND words @@ plainto_tsquery('simple', $2) AND metadata @> $3",
            )
            .await?;
        let filter_json = Value::Object(filter.clone());
        let mut budget = POSTINGS_BUDGET;
        let mut total = 0.0f32;
        let mut by_keyword: HashMap<String, f32> = HashMap::new();
        for (token, everywhere) in counted {
            if everywhere > budget {
                // Too common to read at this cost: not counted.
                continue;
            }
            budget -= everywhere;
            let weight = hybrid::weight(
                u64::try_from(everywhere).unwrap_or(0),
                u64::try_from(n).unwrap_or(0),
            );
            total += weight;
            for row in client
                .query(&postings, &[&name, &token, &filter_json])
                .await?
            {
                *by_keyword.entry(row.get(0)).or_default() += weight;
            }
        }
        let keyword = |id: &str| {
            if total > 0.0 {
                by_keyword.get(id).map_or(0.0, |w| w / total)
            } else {
                0.0
            }
        };
        let seen: HashSet<String> = by_vector.iter().map(|h| h.id.clone()).collect();
        let mut scored: Vec<SearchHit> = by_vector
            .into_iter()
            .map(|mut h| {
                h.score = hybrid::fuse(h.score, keyword(&h.id));
                h
            })
            .collect();
        let mut by_weight: Vec<(&String, &f32)> = by_keyword
            .iter()
            .filter(|(id, _)| !seen.contains(*id))
            .collect();
        by_weight.sort_by(|a, b| b.1.total_cmp(a.1).then(b.0.cmp(a.0)));
        by_weight.truncate(pool);
        if !by_weight.is_empty() {
            let ids: Vec<&String> = by_weight.iter().map(|(id, _)| *id).collect();
            let rows = client
                .query(
                    &format!(
                        "SELECT id, text, metadata,
                             1 - (embedding::vector({dimension}) <=> $1::vector({dimension})) AS score
                         FROM ocg_items WHERE collection = $2 AND id = ANY($3)"
                    ),
                    &[&Vector::from(query.to_vec()), &name, &ids],
                )
                .await?;
            scored.extend(rows.iter().map(hit).map(|mut h| {
                h.score = hybrid::fuse(h.score, keyword(&h.id));
                h
            }));
        }
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        Ok(scored)
    }

    async fn search_items(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, PgError> {
        let name = checked(&request.collection)?;
        let Some(dimension) = self.dimension(name).await? else {
            return Ok(Vec::new());
        };
        if request.top_k == 0 {
            return Ok(Vec::new());
        }
        let (vector, text) = match &request.query {
            SearchQuery::Vector(vector) => (vector.clone(), None),
            SearchQuery::Text(text) => (
                self.embedder
                    .embed_one(text)
                    .await
                    .map_err(PgError::Embed)?,
                Some(text.as_str()),
            ),
        };
        if i32::try_from(vector.len()).ok() != Some(dimension) {
            return Err(PgError::Invalid(format!(
                "the query has {} dimensions, collection {name:?} {dimension}",
                vector.len()
            )));
        }
        let mut hits = match text.filter(|_| request.hybrid) {
            Some(text) => {
                self.hybrid(
                    name,
                    dimension,
                    &vector,
                    text,
                    request.top_k,
                    &request.filter,
                )
                .await?
            }
            None => {
                self.nearest(name, dimension, &vector, request.top_k, &request.filter)
                    .await?
            }
        };
        if let Some(min) = request.min_score {
            hits.retain(|h| h.score >= min);
        }
        hits.truncate(request.top_k);
        Ok(hits)
    }

    async fn delete_items(&self, collection: &str, ids: &[String]) -> Result<Vec<String>, PgError> {
        let name = checked(collection)?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "DELETE FROM ocg_items WHERE collection = $1 AND id = ANY($2) RETURNING id",
                &[&name, &ids],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<VectorItem>, PgError> {
        let name = checked(collection)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, text, metadata FROM ocg_items WHERE collection = $1 AND id = $2",
                &[&name, &id],
            )
            .await?;
        Ok(row.as_ref().map(item))
    }

    async fn list_items(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VectorItem>, u64), PgError> {
        let name = checked(collection)?;
        let client = self.pool.get().await?;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT id, text, metadata FROM ocg_items WHERE collection = $1
                 ORDER BY seq DESC OFFSET $2 LIMIT $3",
                &[&name, &clamp(offset), &clamp(limit)],
            )
            .await?;
        let total: i64 = client
            .query_one(
                "SELECT count(*) FROM ocg_items WHERE collection = $1",
                &[&name],
            )
            .await?
            .get(0);
        Ok((
            rows.iter().map(item).collect(),
            u64::try_from(total).unwrap_or(0),
        ))
    }
}

#[async_trait]
impl VectorStore for PgVectorStore {
    async fn upsert(&self, collection: &str, items: &[VectorItem]) -> ocg_core::Result<()> {
        Ok(self.upsert_items(collection, items).await?)
    }

    async fn delete(&self, collection: &str, ids: &[String]) -> ocg_core::Result<Vec<String>> {
        Ok(self.delete_items(collection, ids).await?)
    }

    async fn search(&self, request: &SearchRequest) -> ocg_core::Result<Vec<SearchHit>> {
        Ok(self.search_items(request).await?)
    }

    async fn get(&self, collection: &str, id: &str) -> ocg_core::Result<Option<VectorItem>> {
        Ok(self.get_item(collection, id).await?)
    }

    async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> ocg_core::Result<(Vec<VectorItem>, u64)> {
        Ok(self.list_items(collection, offset, limit).await?)
    }

    async fn check(&self) -> ocg_core::Result<()> {
        let client = self.pool.get().await.map_err(PgError::from)?;
        client
            .execute("SELECT 1", &[])
            .await
            .map_err(PgError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_a_statement() {
        assert!(valid_collection_name("memories"));
        assert!(valid_collection_name("a.b-c_9"));
        for bad in [
            "",
            ".hidden",
            "x'; DROP TABLE ocg_items; --",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!valid_collection_name(bad), "{bad:?}");
        }
        assert_ne!(key("memories"), key("memorieS"));
    }
}

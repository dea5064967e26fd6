//! The [`VectorStore`] contract: durable collections of vectors with text
//! and metadata, searched by similarity (and by keywords when asked).

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Result, SearchHit, SearchRequest, VectorItem};

/// Whether `name` can name a collection in every store (and a file of the
/// embedding service's): 1–64 of `A-Za-z0-9_.-`, not starting with a dot.
pub fn valid_collection_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Collections of embedded items: what the agent's memory is kept in.
///
/// Contract:
/// - [`upsert`](VectorStore::upsert) creates the collection on first use and
///   replaces items with the same id; items with text and no vector are
///   embedded by the store. It succeeds only once the items are durable.
/// - Reads of a collection that does not exist yet (search, get, list) are
///   empty, not errors: "nothing stored" is an ordinary state.
/// - Scores are in `[0, 1]`-ish, higher is better; `min_score` applies to the
///   score returned.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Insert or replace items.
    async fn upsert(&self, collection: &str, items: &[VectorItem]) -> Result<()>;

    /// Delete items by id; returns the ids that existed.
    async fn delete(&self, collection: &str, ids: &[String]) -> Result<Vec<String>>;

    /// Search one collection.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>>;

    /// One item (without its vector), if it exists.
    async fn get(&self, collection: &str, id: &str) -> Result<Option<VectorItem>>;

    /// A page of items (without vectors), newest first, and the total count.
    async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VectorItem>, u64)>;

    /// Whether the store is reachable and ready; the error says why not.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl<T: VectorStore + ?Sized> VectorStore for Arc<T> {
    async fn upsert(&self, collection: &str, items: &[VectorItem]) -> Result<()> {
        (**self).upsert(collection, items).await
    }
    async fn delete(&self, collection: &str, ids: &[String]) -> Result<Vec<String>> {
        (**self).delete(collection, ids).await
    }
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        (**self).search(request).await
    }
    async fn get(&self, collection: &str, id: &str) -> Result<Option<VectorItem>> {
        (**self).get(collection, id).await
    }
    async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VectorItem>, u64)> {
        (**self).list(collection, offset, limit).await
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
}

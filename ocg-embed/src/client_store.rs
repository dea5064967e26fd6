//! [`VectorStore`] for [`EmbeddingClient`]: the agent's memory is kept in
//! the embedding service.

use async_trait::async_trait;
use ocg_core::{Embedder, Result, SearchHit, SearchRequest, VectorItem, VectorStore};

use crate::EmbeddingClient;

#[async_trait]
impl VectorStore for EmbeddingClient {
    async fn upsert(&self, collection: &str, items: &[VectorItem]) -> Result<()> {
        EmbeddingClient::upsert(self, collection, items).await
    }

    async fn delete(&self, collection: &str, ids: &[String]) -> Result<Vec<String>> {
        EmbeddingClient::delete(self, collection, ids).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        EmbeddingClient::search(self, request).await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<VectorItem>> {
        EmbeddingClient::get(self, collection, id).await
    }

    async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VectorItem>, u64)> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        EmbeddingClient::list(self, collection, offset, limit).await
    }

    async fn check(&self) -> Result<()> {
        Embedder::check(self).await
    }
}

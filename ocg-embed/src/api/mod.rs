//! The embedding and vector HTTP API (feature `server`).
//!
//! | route | what |
//! |---|---|
//! | `POST /embed` | `{"text"}` or `{"texts":[…]}` → `{"vectors","dimension","model"}` |
//! | `POST /v1/embeddings` | OpenAI-compatible (`input`, `model`, `encoding_format` float/base64, `usage`) |
//! | `GET /info` | model, dimension, index settings, llama-server state, collections with counts |
//! | `GET /collections` | collections with counts |
//! | `PUT /collections/{name}` | create (`{"dimension"}` optional: the model's) |
//! | `DELETE /collections/{name}` | drop with all items |
//! | `POST /collections/{name}/items` | upsert `{"items":[{id, text \\| vector, metadata}]}` (creates the collection) |
//! | `GET /collections/{name}/items?offset=&limit=` | a page of items, newest first: `{"items","total"}` |
//! | `GET /collections/{name}/items/{id}` | one item (`?vector=true` adds the vector) |
//! | `DELETE /collections/{name}/items/{id}` | delete one |
//! | `POST /collections/{name}/delete` | delete `{"ids":[…]}` |
//! | `POST /collections/{name}/reindex` | re-embed every text with the current model |
//! | `POST /search` | `{collection, text \\| vector, top_k, min_score?, filter?, hybrid?}` → `{"hits":[…]}` ([`crate::hybrid`]) |
//!
//! Every error is `{"error":{"code","message","type"}}` with a 4xx or 5xx
//! status (OpenAI's shape, so its SDKs show the message); bad input is
//! rejected before anything is stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use ocg_core::{Embedder, HealthCheck, SearchQuery, SearchRequest, VectorItem};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::EmbedError;
use crate::index::{HnswParams, normalize};
use crate::llama::{LlamaEmbedder, LlamaStatus};
use crate::settings::Limits;
use crate::store::{CollectionStore, PreparedItem, valid_collection_name};

/// The embedder, the store and the limits behind the API.
#[derive(Clone)]
pub struct EmbeddingApi {
    embedder: Arc<dyn Embedder>,
    llama: Option<LlamaEmbedder>,
    store: Arc<CollectionStore>,
    limits: Limits,
    hnsw: HnswParams,
}

impl std::fmt::Debug for EmbeddingApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingApi")
            .field("llama", &self.llama)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EmbeddingApi {
    /// An engine embedding with any [`Embedder`] (tests use
    /// `ocg_core::testing::DeterministicEmbedder`).
    pub fn new(
        embedder: Arc<dyn Embedder>,
        store: Arc<CollectionStore>,
        limits: Limits,
        hnsw: HnswParams,
    ) -> Self {
        EmbeddingApi {
            embedder,
            llama: None,
            store,
            limits,
            hnsw,
        }
    }

    /// An engine embedding with a supervised `llama-server`, whose state
    /// `/health` and `/info` report.
    pub fn with_llama(
        llama: LlamaEmbedder,
        store: Arc<CollectionStore>,
        limits: Limits,
        hnsw: HnswParams,
    ) -> Self {
        EmbeddingApi {
            embedder: Arc::new(llama.clone()),
            llama: Some(llama),
            store,
            limits,
            hnsw,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<CollectionStore> {
        &self.store
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub(crate) async fn llama_check(&self) -> HealthCheck {
        match (&self.llama, self.embedder.check().await) {
            (Some(llama), Ok(())) => match llama.status() {
                LlamaStatus::Ready {
                    pid, port, model, ..
                } => HealthCheck::ok("llama", Some(format!("{model} on port {port} (PID {pid})"))),
                LlamaStatus::Starting { .. } => {
                    HealthCheck::starting("llama", "the embedding model is loading")
                }
                LlamaStatus::Failed { message } => HealthCheck::failing("llama", message),
            },
            (None, Ok(())) => HealthCheck::ok("llama", None),
            (Some(llama), Err(error)) if matches!(llama.status(), LlamaStatus::Starting { .. }) => {
                HealthCheck::starting("llama", error.to_string())
            }
            (_, Err(error)) => HealthCheck::failing("llama", error.to_string()),
        }
    }

    async fn embed(&self, texts: Vec<String>) -> Result<(Vec<Vec<f32>>, String), EmbedError> {
        let info = self.embedder.info().await?;
        let vectors = self.embedder.embed(&texts).await?;
        if vectors.iter().any(|v| v.len() != info.dimension) {
            return Err(EmbedError::EmbedderUnavailable(
                "the embedder returned vectors of another length than it announced".into(),
            ));
        }
        Ok((vectors, info.model))
    }

    /// Re-embed every text of `collection` with the current model and
    /// rebuild its index; the number of items re-embedded.
    pub async fn reindex(&self, collection: &str) -> Result<usize, EmbedError> {
        let store = self.store.clone();
        let name = collection.to_owned();
        let texts = blocking(move || store.texts(&name)).await?;
        let info = self.embedder.info().await?;
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.limits.max_batch.clamp(1, 64)) {
            let batch: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
            let (embedded, _) = self.embed(batch).await?;
            vectors.extend(chunk.iter().map(|(id, _)| id.clone()).zip(embedded));
        }
        let store = self.store.clone();
        let name = collection.to_owned();
        blocking(move || store.reindex(&name, &info.model, info.dimension, vectors)).await
    }
}

/// A collection's dimension and model, off the async threads (a rebuild
/// may hold the collection for a while).
async fn describe(
    engine: &EmbeddingApi,
    name: &str,
) -> Result<Option<(usize, Option<String>)>, EmbedError> {
    let store = engine.store.clone();
    let name = name.to_owned();
    blocking(move || Ok(store.describe(&name))).await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EmbedError> + Send + 'static,
) -> Result<T, EmbedError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EmbedError::Internal(e.to_string()))?
}

mod body;
mod collections;
mod embeddings;

use body::*;
use collections::*;
pub use collections::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use embeddings::*;

/// The API routes, for merging into the service's router.
pub fn routes<S>(engine: EmbeddingApi) -> Router<S> {
    let limit = engine.limits.max_body_bytes;
    Router::new()
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/info", get(info))
        .route("/collections", get(list_collections))
        .route(
            "/collections/{name}",
            put(create_collection).delete(drop_collection),
        )
        .route("/collections/{name}/items", post(upsert).get(list_items))
        .route(
            "/collections/{name}/items/{id}",
            get(get_item).delete(delete_item),
        )
        .route("/collections/{name}/delete", post(delete_items))
        .route("/collections/{name}/reindex", post(reindex))
        .route("/search", post(search))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(engine)
}

#[cfg(test)]
mod tests;

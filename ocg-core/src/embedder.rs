//! The [`Embedder`] contract: text in, unit vectors out.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What an embedder produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedderInfo {
    /// Model name.
    pub model: String,
    /// Length of every vector.
    pub dimension: usize,
}

/// Turns texts into L2-normalized vectors.
///
/// Contract: `embed` returns one vector per input text, in input order, each
/// of length [`EmbedderInfo::dimension`] and unit length, or fails as a whole.
/// Empty or whitespace-only texts are [`Error::InvalidInput`].
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Embed a batch of texts in one call.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// Model and dimension.
    async fn info(&self) -> Result<EmbedderInfo>;

    /// Whether the embedder is reachable and ready; the error says why not.
    /// Defaults to asking for [`info`](Embedder::info).
    async fn check(&self) -> Result<()> {
        self.info().await.map(|_| ())
    }

    /// Embed one text.
    async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut vectors = self.embed(&[text.to_owned()]).await?;
        vectors
            .pop()
            .ok_or_else(|| Error::unavailable("embedder", "returned no vector"))
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Embedder for Arc<T> {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts).await
    }
    async fn info(&self) -> Result<EmbedderInfo> {
        (**self).info().await
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Embedder for Box<T> {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts).await
    }
    async fn info(&self) -> Result<EmbedderInfo> {
        (**self).info().await
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
}

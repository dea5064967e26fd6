//! [`EmbeddingClient`]: the embedding service over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use ocg_core::{
    Embedder, EmbedderInfo, Error, HealthReport, HealthStatus, Result, SearchHit, SearchRequest,
    VectorItem,
};
use serde::Deserialize;

use crate::EmbeddingEndpoint;

/// [`Embedder`] backed by the embedding service's HTTP API
/// (`POST /embed`, `GET /info`, `GET /health`).
///
/// The base URL is resolved per request from its [`EmbeddingEndpoint`], so a
/// service that restarted on another port is found again.
#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    endpoint: EmbeddingEndpoint,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct EmbedAnswer {
    vectors: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct InfoAnswer {
    model: Option<String>,
    dimension: Option<usize>,
    #[serde(default)]
    embedder_error: Option<String>,
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: Vec<SearchHit>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl EmbeddingClient {
    /// A client of the service at `endpoint`.
    pub fn new(endpoint: EmbeddingEndpoint) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap_or_default();
        EmbeddingClient { endpoint, http }
    }

    fn url(&self, path: &str) -> Result<String> {
        let base = self
            .endpoint
            .base_url()
            .map_err(|message| Error::unavailable("embedding", message))?;
        Ok(format!("{base}{path}"))
    }

    /// Insert or replace items of `collection` (created on first use);
    /// items with text and no vector are embedded by the service.
    pub async fn upsert(&self, collection: &str, items: &[VectorItem]) -> Result<()> {
        let response = self
            .http
            .post(self.url(&format!("/collections/{collection}/items"))?)
            .json(&serde_json::json!({ "items": items }))
            .send()
            .await
            .map_err(unavailable)?;
        decode::<serde_json::Value>(response).await.map(|_| ())
    }

    /// Delete items of `collection` by id; the ids that existed.
    pub async fn delete(&self, collection: &str, ids: &[String]) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Deleted {
            deleted: Vec<String>,
        }
        let response = self
            .http
            .post(self.url(&format!("/collections/{collection}/delete"))?)
            .json(&serde_json::json!({ "ids": ids }))
            .send()
            .await
            .map_err(unavailable)?;
        decode::<Deleted>(response).await.map(|d| d.deleted)
    }

    /// Similarity search.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let response = self
            .http
            .post(self.url("/search")?)
            .json(request)
            .send()
            .await
            .map_err(unavailable)?;
        decode::<SearchAnswer>(response).await.map(|a| a.hits)
    }

    /// The service's health report.
    pub async fn health(&self) -> Result<HealthReport> {
        let response = self
            .http
            .get(self.url("/health")?)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(unavailable)?;
        decode(response).await
    }
}

fn unavailable(error: reqwest::Error) -> Error {
    let message = if error.is_connect() {
        "connection refused".to_owned()
    } else if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    Error::unavailable("embedding", message)
}

async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(unavailable)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| Error::unavailable("embedding", format!("unexpected answer: {e}")));
    }
    match serde_json::from_slice::<ErrorAnswer>(&bytes) {
        Ok(answer) if status == reqwest::StatusCode::NOT_FOUND => {
            Err(Error::NotFound(answer.error.message))
        }
        Ok(answer) if status.is_client_error() && answer.error.code != "not_found" => {
            Err(Error::InvalidInput(answer.error.message))
        }
        Ok(answer) => Err(Error::Remote {
            code: answer.error.code,
            message: answer.error.message,
        }),
        Err(_) => Err(Error::unavailable("embedding", format!("HTTP {status}"))),
    }
}

#[async_trait]
impl Embedder for EmbeddingClient {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let response = self
            .http
            .post(self.url("/embed")?)
            .json(&serde_json::json!({ "texts": texts }))
            .send()
            .await
            .map_err(unavailable)?;
        let answer: EmbedAnswer = decode(response).await?;
        if answer.vectors.len() != texts.len() {
            return Err(Error::unavailable(
                "embedding",
                format!("{} vectors for {} texts", answer.vectors.len(), texts.len()),
            ));
        }
        Ok(answer.vectors)
    }

    async fn info(&self) -> Result<EmbedderInfo> {
        let response = self
            .http
            .get(self.url("/info")?)
            .send()
            .await
            .map_err(unavailable)?;
        let answer: InfoAnswer = decode(response).await?;
        match (answer.model, answer.dimension) {
            (Some(model), Some(dimension)) => Ok(EmbedderInfo { model, dimension }),
            _ => Err(Error::unavailable(
                "embedding",
                answer
                    .embedder_error
                    .unwrap_or_else(|| "no embedding model".into()),
            )),
        }
    }

    async fn check(&self) -> Result<()> {
        let report = self.health().await?;
        match report.status {
            HealthStatus::Ok => Ok(()),
            _ => Err(Error::unavailable(
                "embedding",
                report.problems().join(", "),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddressFile;

    #[tokio::test]
    async fn reports_an_unannounced_service_as_unavailable() {
        let client = EmbeddingClient::new(EmbeddingEndpoint::Announced(AddressFile::new(
            "/nonexistent/ocg-embedding.addr",
        )));
        let error = client.check().await.unwrap_err();
        assert_eq!(error.code(), "unavailable");
        assert!(error.to_string().contains("no embedding service announced"));
    }

    #[tokio::test]
    async fn checks_a_live_service() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router =
            crate::service::router(std::sync::Arc::new(crate::service::EmbeddingState::new()));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = EmbeddingClient::new(EmbeddingEndpoint::Fixed(url));
        client.check().await.unwrap();
        assert_eq!(client.health().await.unwrap().service, "embedding");
    }
}

//! [`EmbeddingClient`]: the embedding service over HTTP.

use std::time::Duration;

use async_trait::async_trait;
use ocg_core::config::Secret;
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
    /// A client of the service at `endpoint`, sending `token`
    /// (`OCG_EMBEDDING_TOKEN`) with every request.
    pub fn new(endpoint: EmbeddingEndpoint, token: &Secret) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(mut value) =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .default_headers(headers)
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

    /// Similarity search, best first; `request.hybrid` (with a text query)
    /// adds keyword matching, see the service's docs. A collection that does
    /// not exist yet holds nothing: its search is an empty list, not an error.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let response = self
            .http
            .post(self.url("/search")?)
            .json(request)
            .send()
            .await
            .map_err(unavailable)?;
        match decode_found::<SearchAnswer>(response).await? {
            Ok(answer) => Ok(answer.hits),
            Err(Missing::Collection) => Ok(Vec::new()),
            Err(Missing::Item) => Err(Error::NotFound("search answered 404".into())),
        }
    }

    /// One item (id, text, metadata; no vector), or `None` when the item or
    /// its whole collection does not exist.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<VectorItem>> {
        let response = self
            .http
            .get(self.item_url(collection, Some(id))?)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(decode_found::<VectorItem>(response).await?.ok())
    }

    /// A page of `collection`'s items, newest first (no vectors), and how
    /// many it holds in all. `limit` is 1 to 500 (the service refuses
    /// others); a collection that does not exist is an empty page of 0.
    pub async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<VectorItem>, u64)> {
        #[derive(Deserialize)]
        struct Page {
            items: Vec<VectorItem>,
            total: u64,
        }
        let mut url = self.item_url(collection, None)?;
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string())
            .append_pair("limit", &limit.to_string());
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        match decode_found::<Page>(response).await? {
            Ok(page) => Ok((page.items, page.total)),
            Err(Missing::Collection) => Ok((Vec::new(), 0)),
            Err(Missing::Item) => Err(Error::NotFound("listing answered 404".into())),
        }
    }

    /// `/collections/{collection}/items[/{id}]`, each part percent-encoded.
    fn item_url(&self, collection: &str, id: Option<&str>) -> Result<reqwest::Url> {
        let mut segments = vec!["collections", collection, "items"];
        segments.extend(id);
        self.segments_url(&segments)
    }

    /// The service's URL of `segments`, each percent-encoded.
    fn segments_url(&self, segments: &[&str]) -> Result<reqwest::Url> {
        let base = self.url("")?;
        let mut url = reqwest::Url::parse(&base)
            .map_err(|e| Error::unavailable("embedding", format!("bad address {base:?}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Error::unavailable("embedding", format!("bad address {base:?}")))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The names of the service's collections.
    pub async fn collections(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Collection {
            name: String,
        }
        #[derive(Deserialize)]
        struct Collections {
            collections: Vec<Collection>,
        }
        let response = self
            .http
            .get(self.url("/collections")?)
            .send()
            .await
            .map_err(unavailable)?;
        let answer: Collections = decode(response).await?;
        Ok(answer.collections.into_iter().map(|c| c.name).collect())
    }

    /// Re-embed every stored text of `collection` with the service's current
    /// model and rebuild its index; how many items were re-embedded. May take
    /// minutes for a large collection (allowed up to an hour).
    pub async fn reindex(&self, collection: &str) -> Result<u64> {
        #[derive(Deserialize)]
        struct Reindexed {
            reindexed: u64,
        }
        let url = self.segments_url(&["collections", collection, "reindex"])?;
        let response = self
            .http
            .post(url)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(unavailable)?;
        decode::<Reindexed>(response).await.map(|r| r.reindexed)
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

/// Which thing a 404 of the service says is missing.
#[derive(Debug, PartialEq)]
enum Missing {
    Collection,
    Item,
}

/// Like [`decode`], but a 404 naming a missing collection or item is
/// `Ok(Err(Missing))`, for calls that treat those as empty.
async fn decode_found<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<Result<T, Missing>> {
    if response.status() != reqwest::StatusCode::NOT_FOUND {
        return decode(response).await.map(Ok);
    }
    let bytes = response.bytes().await.map_err(unavailable)?;
    match serde_json::from_slice::<ErrorAnswer>(&bytes) {
        Ok(answer) if answer.error.code == "collection_not_found" => Ok(Err(Missing::Collection)),
        Ok(answer) if answer.error.code == "not_found" => Ok(Err(Missing::Item)),
        Ok(answer) => Err(Error::NotFound(answer.error.message)),
        Err(_) => Err(Error::unavailable("embedding", "HTTP 404")),
    }
}

/// Decode a service answer. Errors keep their meaning: 404 →
/// [`Error::NotFound`], other 4xx → [`Error::InvalidInput`] with the
/// service's message, 5xx → [`Error::Remote`] with the service's stable
/// code, no usable answer → [`Error::Unavailable`].
async fn decode<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(unavailable)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| Error::unavailable("embedding", format!("unexpected answer: {e}")));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::unavailable(
            "embedding",
            "the embedding service refused our token: OCG_EMBEDDING_TOKEN differs from the service's",
        ));
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
        let client = EmbeddingClient::new(
            EmbeddingEndpoint::Announced(AddressFile::new("/nonexistent/ocg-embedding.addr")),
            &Secret::new("t"),
        );
        let error = client.check().await.unwrap_err();
        assert_eq!(error.code(), "unavailable");
        assert!(error.to_string().contains("no embedding service announced"));
    }

    #[cfg(feature = "server")]
    #[tokio::test]
    async fn checks_a_live_service() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router =
            crate::service::router(std::sync::Arc::new(crate::service::EmbeddingState::new()));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = EmbeddingClient::new(EmbeddingEndpoint::Fixed(url), &Secret::new("t"));
        client.check().await.unwrap();
        assert_eq!(client.health().await.unwrap().service, "embedding");
    }
    #[cfg(feature = "server")]
    #[tokio::test]
    async fn gets_lists_and_searches_with_missing_collections_as_empty() {
        use crate::api::EmbeddingApi;
        use crate::index::HnswParams;
        use crate::service::{EmbeddingState, router};
        use crate::settings::Limits;
        use crate::store::CollectionStore;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let store = CollectionStore::open(
            &dir.path().join("e.db"),
            &dir.path().join("idx"),
            HnswParams::default(),
        )
        .unwrap();
        let engine = EmbeddingApi::new(
            Arc::new(ocg_core::testing::DeterministicEmbedder::new(8)),
            Arc::new(store),
            Limits {
                max_batch: 16,
                max_body_bytes: 1 << 20,
                max_top_k: 10,
            },
            HnswParams::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = Secret::new("the-token");
        let app = router(Arc::new(EmbeddingState::with_engine(engine, token.clone())));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = EmbeddingClient::new(EmbeddingEndpoint::Fixed(url.clone()), &token);
        let stranger = EmbeddingClient::new(EmbeddingEndpoint::Fixed(url), &Secret::new("nope"));
        let error = stranger.list("mem", 0, 10).await.unwrap_err();
        assert_eq!(error.code(), "unavailable");
        assert!(error.to_string().contains("OCG_EMBEDDING_TOKEN"), "{error}");

        let search = |text: &str, hybrid: bool| SearchRequest {
            collection: "mem".into(),
            query: ocg_core::SearchQuery::Text(text.into()),
            top_k: 3,
            min_score: None,
            filter: Default::default(),
            hybrid,
        };
        assert!(client.search(&search("x", true)).await.unwrap().is_empty());
        assert_eq!(client.list("mem", 0, 10).await.unwrap(), (Vec::new(), 0));
        assert_eq!(client.get("mem", "a").await.unwrap(), None);

        let item = |id: &str, text: &str| VectorItem {
            id: id.into(),
            text: Some(text.into()),
            vector: None,
            metadata: serde_json::json!({ "k": 1 }).as_object().cloned().unwrap(),
        };
        client
            .upsert(
                "mem",
                &[item("a/1 ?", "the Zorblax invoice"), item("b", "tea")],
            )
            .await
            .unwrap();
        let got = client.get("mem", "a/1 ?").await.unwrap().unwrap();
        assert_eq!(got.text.as_deref(), Some("the Zorblax invoice"));
        assert_eq!(got.metadata["k"], 1);
        assert_eq!(got.vector, None);
        assert_eq!(client.get("mem", "nope").await.unwrap(), None);
        let (items, total) = client.list("mem", 0, 1).await.unwrap();
        assert_eq!((items[0].id.as_str(), total), ("b", 2));
        assert_eq!(client.collections().await.unwrap(), ["mem"]);
        assert_eq!(client.reindex("mem").await.unwrap(), 2);
        assert_eq!(
            client.reindex("nope").await.unwrap_err().code(),
            "not_found"
        );
        let hits = client.search(&search("zorblax", true)).await.unwrap();
        assert_eq!(hits[0].id, "a/1 ?");
        assert!(hits[0].score >= crate::hybrid::KEYWORD_WEIGHT);

        // Errors keep their kinds.
        let error = client.search(&search("  ", true)).await.unwrap_err();
        assert_eq!(error.code(), "invalid_input");
        let error = client.list("mem", 0, 0).await.unwrap_err();
        assert_eq!(error.code(), "invalid_input");
        assert!(error.to_string().contains("limit"), "{error}");
    }
}

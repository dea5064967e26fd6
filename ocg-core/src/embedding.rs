//! Vector store wire types shared by the embedding service and its clients.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One item of a vector collection, as upserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorItem {
    /// Caller-chosen id; an upsert of an existing id replaces it.
    pub id: String,
    /// Text to embed server-side (and to return with hits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A ready vector, instead of (or as well as) text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Free-form metadata, filterable at search time.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// What to search by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchQuery {
    /// Embed this text and search with it.
    Text(String),
    /// Search with this vector.
    Vector(Vec<f32>),
}

/// A similarity search in one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Collection name.
    pub collection: String,
    /// Text or vector.
    #[serde(flatten)]
    pub query: SearchQuery,
    /// How many hits at most.
    pub top_k: usize,
    /// Drop hits scoring below this score (the cosine similarity, or the
    /// fused score of a hybrid search, which is never below the cosine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Keep only items whose metadata has these exact key/value pairs.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub filter: Map<String, Value>,
    /// Combine vector similarity with keyword matching of the query text
    /// (text queries only), so exact names and numbers are found too. The
    /// embedding service documents how the two are scored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hybrid: bool,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The item's id.
    pub id: String,
    /// Cosine similarity to the query: 1.0 for an identical direction. In a
    /// hybrid search, the cosine lifted by keyword matches, still within
    /// 0.0 to 1.0 (see the embedding service's docs).
    pub score: f32,
    /// The item's text, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The item's metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_request_flattens_the_query() {
        let request: SearchRequest = serde_json::from_str(
            r#"{"collection":"memories","text":"coffee","top_k":3,"min_score":0.5}"#,
        )
        .unwrap();
        assert_eq!(request.query, SearchQuery::Text("coffee".into()));
        assert_eq!(request.top_k, 3);
        let by_vector: SearchRequest =
            serde_json::from_str(r#"{"collection":"c","vector":[0.5,0.5],"top_k":1}"#).unwrap();
        assert_eq!(by_vector.query, SearchQuery::Vector(vec![0.5, 0.5]));
    }
}

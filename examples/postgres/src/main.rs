//! Memories in PostgreSQL with pgvector, through `ocg-postgres`:
//!
//! ```sh
//! OCG_DATABASE_URL=postgres://ocg@127.0.0.1:5432/ocg cargo run -p example-postgres
//! ```
//!
//! It migrates the database, stores three notes (embedded by the
//! deterministic test embedder of `ocg-core`; the agent uses the embedding
//! service), then asks a question by vector alone and by hybrid search, and
//! removes what it stored.

use std::sync::Arc;

use anyhow::Context;
use ocg_core::testing::DeterministicEmbedder;
use ocg_core::{SearchQuery, SearchRequest, VectorItem, VectorStore};
use ocg_postgres::PgVectorStore;

const COLLECTION: &str = "example-notes";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("OCG_DATABASE_URL")
        .context("set OCG_DATABASE_URL to a PostgreSQL database with pgvector")?;
    let pool = ocg_postgres::open(&url).await?;
    let store = PgVectorStore::new(pool, Arc::new(DeterministicEmbedder::new(64)));
    let notes = [
        ("1", "The meeting with Wrzesniewska is on Tuesday"),
        ("2", "The weekly meeting moved to Thursday"),
        ("3", "Ann drinks coffee every morning"),
    ];
    let items: Vec<VectorItem> = notes
        .iter()
        .map(|(id, text)| VectorItem {
            id: (*id).into(),
            text: Some((*text).into()),
            vector: None,
            metadata: serde_json::Map::new(),
        })
        .collect();
    store.upsert(COLLECTION, &items).await?;
    for hybrid in [false, true] {
        let hits = store
            .search(&SearchRequest {
                collection: COLLECTION.into(),
                query: SearchQuery::Text("When is the meeting with Wrzesniewska?".into()),
                top_k: 2,
                min_score: None,
                filter: serde_json::Map::new(),
                hybrid,
            })
            .await?;
        println!("{}:", if hybrid { "hybrid" } else { "vector" });
        for hit in hits {
            println!("  {:.3}  {}", hit.score, hit.text.unwrap_or_default());
        }
    }
    let ids: Vec<String> = notes.iter().map(|(id, _)| (*id).to_owned()).collect();
    store.delete(COLLECTION, &ids).await?;
    Ok(())
}

//! Memories and sessions in PostgreSQL with pgvector, through `ocg-postgres`:
//!
//! ```sh
//! OCG_DATABASE_URL=postgres://ocg@127.0.0.1:5432/ocg cargo run -p example-postgres
//! ```
//!
//! It migrates the database, stores three notes (embedded by the
//! deterministic test embedder of `ocg-core`; the agent uses the embedding
//! service), then asks a question by vector alone and by hybrid search;
//! then stores a turn of a session under the session's lock (what keeps two
//! agents of one database from running its turns at once) and reads it
//! back; and removes what it stored.

use std::sync::Arc;

use anyhow::Context;
use ocg_core::testing::DeterministicEmbedder;
use ocg_core::{
    Message, NewMessage, Role, SearchQuery, SearchRequest, SessionStore, VectorItem, VectorStore,
};
use ocg_postgres::{PgSessionStore, PgVectorStore};

const COLLECTION: &str = "example-notes";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("OCG_DATABASE_URL")
        .context("set OCG_DATABASE_URL to a PostgreSQL database with pgvector")?;
    let pool = ocg_postgres::open(&url).await?;
    let store = PgVectorStore::new(pool.clone(), Arc::new(DeterministicEmbedder::new(64)));
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

    let sessions = PgSessionStore::new(pool);
    let key = "example:postgres";
    {
        let _turn = sessions.lock_session(key).await?;
        let turn = sessions
            .append_turn(
                key,
                [(Role::User, "hi"), (Role::Assistant, "hello")]
                    .map(|(role, text)| NewMessage {
                        message: Message::new(role, text),
                        tokens: 1,
                    })
                    .into(),
            )
            .await?;
        println!("session {key}: turn {turn} stored");
    }
    for entry in sessions.context(key).await?.messages {
        println!("  {:?}: {}", entry.message.role, entry.message.content);
    }
    sessions.delete(key).await?;
    Ok(())
}

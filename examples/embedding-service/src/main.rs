//! Run with: cargo run -p example-embedding-service
//!
//! The embedding service in-process: a vector store in a temporary data dir,
//! the HTTP API on a free port announced in a file, and `EmbeddingClient`
//! (what the agent uses) storing a few memories and searching them by text.
//!
//! With `LLAMA_SERVER_BIN` and `EMBEDDING_MODEL_PATH` pointing at a real
//! llama-server and GGUF model (`eval "$(scripts/setup-llama.sh)"`), the
//! embeddings are real; without them the example plugs in `ocg-core`'s
//! deterministic word-hashing embedder, to show that the service takes any
//! `Embedder`.

use std::sync::Arc;
use std::time::Duration;

use ocg_core::config::Secret;
use ocg_core::testing::DeterministicEmbedder;
use ocg_core::{Embedder, SearchQuery, SearchRequest, VectorItem};
use ocg_embed::api::EmbeddingApi;
use ocg_embed::index::HnswParams;
use ocg_embed::llama::{LlamaConfig, LlamaEmbedder};
use ocg_embed::service::{self, EmbeddingState};
use ocg_embed::settings::Limits;
use ocg_embed::store::CollectionStore;
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let store = Arc::new(CollectionStore::open(
        &data.path().join("embeddings.db"),
        &data.path().join("indexes"),
        HnswParams::default(),
    )?);
    let model = std::env::var_os("EMBEDDING_MODEL_PATH").map(Into::into);
    let program = std::env::var_os("LLAMA_SERVER_BIN").map(Into::into);
    let engine = match (program, model) {
        (Some(program), Some(model)) => {
            let llama = LlamaEmbedder::start(LlamaConfig {
                program: Some(program),
                model: Some(model),
                ports: 18000..=19000,
                threads: 2,
                slots: 2,
                max_tokens: 512,
                log_file: data.path().join("llama-server.log"),
                startup_timeout: Duration::from_secs(60),
            });
            println!(
                "llama-server ready: {}",
                llama.wait_ready(Duration::from_secs(60)).await
            );
            EmbeddingApi::with_llama(
                llama,
                store.clone(),
                Limits::default(),
                HnswParams::default(),
            )
        }
        _ => {
            println!(
                "no EMBEDDING_MODEL_PATH/LLAMA_SERVER_BIN: using the deterministic test embedder"
            );
            let embedder: Arc<dyn Embedder> = Arc::new(DeterministicEmbedder::new(64));
            EmbeddingApi::new(
                embedder,
                store.clone(),
                Limits::default(),
                HnswParams::default(),
            )
        }
    };

    // Every route but /health needs this token as `Authorization: Bearer`.
    let token = Secret::generate()?;
    let address = AddressFile::new(data.path().join("ocg-embedding.addr"));
    let listener = service::bind_first_free([127, 0, 0, 1].into(), 50000, 60000).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let address = address.clone();
        let router = service::router(Arc::new(EmbeddingState::with_engine(engine, token.clone())));
        tokio::spawn(async move {
            service::serve(listener, router, &address, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    while address.read().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("announced: {}", address.read().unwrap_or_default());

    let client = EmbeddingClient::new(EmbeddingEndpoint::Announced(address.clone()), &token);
    println!("health: {:?}", client.health().await?.status);
    let memory = |id: &str, text: &str| VectorItem {
        id: id.into(),
        text: Some(text.into()),
        vector: None,
        metadata: serde_json::json!({ "source": "example" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    client
        .upsert(
            "memories",
            &[
                memory("1", "Ann drinks her coffee black every morning."),
                memory("2", "The team meeting moved to Thursday at 10."),
                memory("3", "Ann's cat is called Pixel."),
            ],
        )
        .await?;
    let hits = client
        .search(&SearchRequest {
            collection: "memories".into(),
            query: SearchQuery::Text("how does Ann take her coffee".into()),
            top_k: 2,
            min_score: None,
            filter: Default::default(),
            hybrid: false,
        })
        .await?;
    for hit in hits {
        println!(
            "{:.3}  {}  {}",
            hit.score,
            hit.id,
            hit.text.unwrap_or_default()
        );
    }

    let _ = stop.send(());
    server.await??;
    store.snapshot(true)?;
    println!("address withdrawn: {}", address.read().is_none());
    Ok(())
}

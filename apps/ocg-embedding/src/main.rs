//! `ocg-embedding`: the embedding service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ocg_core::config::{Config, Sources};
use ocg_embed::api::EmbeddingApi;
use ocg_embed::llama::LlamaEmbedder;
use ocg_embed::service::{self, EmbeddingState};
use ocg_embed::settings::ServiceSettings;
use ocg_embed::snapshots::Snapshots;
use ocg_embed::store::CollectionStore;
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};
use ocg_process::secrets::TokenSource;
use tracing_subscriber::EnvFilter;

/// OCG embedding service: embeddings and vector search on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// First port to try (OCG_EMBEDDING_PORT; the next free one is taken).
    #[arg(long)]
    port: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Re-embed the stored texts with the current model (after changing
    /// EMBEDDING_MODEL_PATH) and rebuild the indexes. Asks the running
    /// service when there is one, otherwise works on the data dir itself.
    Reindex {
        /// Only this collection (default: all).
        #[arg(long)]
        collection: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // First, so that a SIGTERM at any later moment is a graceful shutdown.
    let shutdown = ocg_process::shutdown_signal();
    let config = Config::load(
        &Sources::from_process_env()
            .with_file(args.config)
            .flag("OCG_EMBEDDING_PORT", args.port),
    )?;
    // Everything written from here on holds user data: owner only.
    ocg_process::private::make_private(&config)?;
    let settings = ServiceSettings::from_config(&config)?;
    match args.command {
        None => serve(config, settings, shutdown).await,
        Some(Command::Reindex { collection }) => reindex(config, settings, collection).await,
    }
}

async fn open_store(settings: &ServiceSettings) -> anyhow::Result<Arc<CollectionStore>> {
    let (database, index_dir, hnsw) = (
        settings.database.clone(),
        settings.index_dir.clone(),
        settings.hnsw,
    );
    let store =
        tokio::task::spawn_blocking(move || CollectionStore::open(&database, &index_dir, hnsw))
            .await?
            .with_context(|| format!("opening {}", settings.database.display()))?;
    Ok(Arc::new(store))
}

async fn serve(
    config: Config,
    settings: ServiceSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The data dir is this process's until it exits.
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "embedding")?;
    let (token, source) = ocg_process::secrets::ensure_token(&config, ocg_embed::TOKEN_KEY)?;
    if let TokenSource::Generated(path) = source {
        tracing::info!(file = %path.display(), "generated the embedding service's token ({})", ocg_embed::TOKEN_KEY);
    }
    let address = AddressFile::new(config.embedding_addr_file());
    service::refuse_second_instance(&address).await?;
    let llama = LlamaEmbedder::start(settings.llama.clone());
    let store = open_store(&settings).await?;
    match ocg_embed::index::FaissLibrary::loaded() {
        Some(faiss) => tracing::info!(level = %faiss.level, library = %faiss.path, "FAISS loaded"),
        None => tracing::info!("FAISS linked statically"),
    }
    // Announce only once the model answers (or cannot), so `ocg start`
    // returns with embeddings ready; bounded by the start timeout.
    let wait = Duration::from_secs(config.start_timeout_secs.saturating_sub(2).max(1));
    if !llama.wait_ready(wait).await {
        tracing::warn!(status = ?llama.status(), "serving without a ready embedding model");
    }
    let listener = service::bind_first_free(
        [127, 0, 0, 1].into(),
        config.embedding_port,
        config.embedding_port_max,
    )
    .await?;
    let engine = EmbeddingApi::with_llama(llama, store.clone(), settings.limits, settings.hnsw);
    let snapshots = Snapshots::start(store, settings.snapshot_every);
    let router = service::router(Arc::new(EmbeddingState::with_engine(engine, token)));
    let served = service::serve(listener, router, &address, shutdown).await;
    snapshots.stop().await;
    served?;
    Ok(())
}

async fn reindex(
    config: Config,
    settings: ServiceSettings,
    collection: Option<String>,
) -> anyhow::Result<()> {
    // A running service re-indexes itself (it owns the data).
    let address = AddressFile::new(config.embedding_addr_file());
    let (token, _) = ocg_process::secrets::ensure_token(&config, ocg_embed::TOKEN_KEY)?;
    let client = EmbeddingClient::new(EmbeddingEndpoint::Announced(address), &token);
    if client.health().await.is_ok() {
        let names = match collection {
            Some(name) => vec![name],
            None => client.collections().await?,
        };
        for name in names {
            let count = client.reindex(&name).await?;
            println!("{name}: {count} items re-embedded");
        }
        return Ok(());
    }
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "embedding")?;
    let llama = LlamaEmbedder::start(settings.llama.clone());
    if !llama.wait_ready(settings.llama.startup_timeout).await {
        anyhow::bail!("the embedding model is not ready: {:?}", llama.status());
    }
    let store = open_store(&settings).await?;
    let engine = EmbeddingApi::with_llama(llama, store.clone(), settings.limits, settings.hnsw);
    let names = match collection {
        Some(name) => vec![name],
        None => store.list().into_iter().map(|c| c.name).collect(),
    };
    for name in names {
        let count = engine.reindex(&name).await?;
        println!("{name}: {count} items re-embedded");
    }
    let store2 = store.clone();
    tokio::task::spawn_blocking(move || store2.snapshot(true)).await??;
    Ok(())
}

//! `ocg-embedding`: the embedding service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ocg_core::config::{Config, Sources};
use ocg_embed::AddressFile;
use ocg_embed::service::{self, EmbeddingState};
use tracing_subscriber::EnvFilter;

/// OCG embedding service: embeddings and vector search on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// First port to try (OCG_EMBEDDING_PORT; the next free one is taken).
    #[arg(long)]
    port: Option<u16>,
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
    let config = Config::load(
        &Sources::from_process_env()
            .with_file(args.config)
            .flag("OCG_EMBEDDING_PORT", args.port),
    )?;
    let address = AddressFile::new(config.embedding_addr_file());
    service::refuse_second_instance(&address).await?;
    let listener = service::bind_first_free(
        [127, 0, 0, 1].into(),
        config.embedding_port,
        config.embedding_port_max,
    )
    .await?;
    let router = service::router(Arc::new(EmbeddingState::new()));
    service::serve(listener, router, &address, ocg_process::shutdown_signal()).await?;
    Ok(())
}

//! `ocg-agent`: the agent service on its Unix socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ocg_agent_lib::server::{self, AgentSocket, AgentState};
use ocg_core::config::{Config, Sources};
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};
use tracing_subscriber::EnvFilter;

/// OCG agent service, reachable on a Unix socket (mode 0600).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Socket path (OCG_AGENT_SOCK).
    #[arg(long)]
    socket: Option<PathBuf>,
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
    let config = Config::load(&Sources::from_process_env().with_file(args.config).flag(
        "OCG_AGENT_SOCK",
        args.socket.map(|p| p.display().to_string()),
    ))?;
    let endpoint = match &config.embedding_url {
        Some(url) => EmbeddingEndpoint::Fixed(url.clone()),
        None => EmbeddingEndpoint::Announced(AddressFile::new(config.embedding_addr_file())),
    };
    let state = AgentState::new(Some(Arc::new(EmbeddingClient::new(endpoint))));
    let socket = AgentSocket::bind(&config.agent_socket).await?;
    socket
        .serve(
            server::router(Arc::new(state)),
            ocg_process::shutdown_signal(),
        )
        .await?;
    Ok(())
}

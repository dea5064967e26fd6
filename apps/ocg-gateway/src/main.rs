//! `ocg-gateway`: the gateway service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ocg_agent_lib::AgentClient;
use ocg_core::config::{Config, Sources};
use ocg_gateway_lib::GatewayState;
use tracing_subscriber::EnvFilter;

/// OCG gateway: HTTP front door on 127.0.0.1:55003 by default.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Bind address (OCG_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port (OCG_PORT).
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
            .flag("OCG_HOST", args.host)
            .flag("OCG_PORT", args.port),
    )?;
    let agent = Arc::new(AgentClient::new(&config.agent_socket)?);
    let router = ocg_gateway_lib::router(GatewayState::new(agent));
    let addr = SocketAddr::new(config.host, config.port);
    ocg_gateway_lib::serve(
        addr,
        config.allow_public_bind,
        router,
        ocg_process::shutdown_signal(),
    )
    .await?;
    Ok(())
}

//! `ocg-agent`: the agent service on its Unix socket.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ocg_agent_lib::AgentRuntime;
use ocg_agent_lib::mcp::{Launcher, McpConfig, McpServers};
use ocg_agent_lib::memory::MemoryBank;
use ocg_agent_lib::schedule::{
    ScheduleStore, Scheduler, SqliteJobStore, SystemClock, spawn_heartbeat,
};
use ocg_agent_lib::server::{self, AgentSocket};
use ocg_agent_lib::sessions::{SessionStore, SqliteSessionStore};
use ocg_agent_lib::settings::AgentSettings;
use ocg_agent_lib::tools::{self, ExecSandbox, ToolGroup, ToolRegistry, Workspace};
use ocg_core::config::{Config, Sources};
use ocg_core::{Agent, HealthCheck, JobStore};
use ocg_embed::{AddressFile, EmbeddingClient, EmbeddingEndpoint};
use ocg_postgres::{PgJobStore, PgSessionStore, PgVectorStore};
use tracing_subscriber::EnvFilter;

mod migrate;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Copy this install's sessions and memories into PostgreSQL (the agent
    /// stopped), for agents sharing it with OCG_DATABASE_URL.
    Migrate {
        /// The database (postgres://…); OCG_DATABASE_URL when absent.
        #[arg(long)]
        to: Option<String>,
    },
}

fn main() -> ExitCode {
    // Helper mode: confine this process and exec the program the `exec` or
    // `process` tool runs. Before any runtime thread exists.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == ocg_process::sandbox::HELPER_MODE)
    {
        let error = ocg_process::sandbox::helper_main(std::env::args_os().skip(2));
        eprintln!("ocg sandbox: {error}");
        return ExitCode::from(126);
    }
    agent_main()
}

#[tokio::main]
async fn agent_main() -> ExitCode {
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
    let config = Config::load(&Sources::from_process_env().with_file(args.config).flag(
        "OCG_AGENT_SOCK",
        args.socket.map(|p| p.display().to_string()),
    ))?;
    // Everything written from here on holds user data: owner only.
    ocg_process::private::make_private(&config)?;
    if let Some(Command::Migrate { to }) = args.command {
        let url = ocg_postgres::migration_target(to, &config)?;
        return migrate::run(&config, &url).await;
    }
    let settings = AgentSettings::from_config(&config)?;
    let endpoint = match &config.embedding_url {
        Some(url) => EmbeddingEndpoint::Fixed(url.clone()),
        None => EmbeddingEndpoint::Announced(AddressFile::new(config.embedding_addr_file())),
    };
    // The data dir is this process's until it exits; then bind: a second
    // instance must fail before it starts a model.
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "agent")?;
    let socket = AgentSocket::bind(&config.agent_socket).await?;
    let provider = settings.build_provider()?;
    tracing::info!(
        provider = provider.name(),
        model = provider.model(),
        "agent ready"
    );
    let (embedding_token, _) = ocg_process::secrets::ensure_token(&config, ocg_embed::TOKEN_KEY)?;
    let embeddings = Arc::new(EmbeddingClient::new(endpoint, &embedding_token));
    let (store, memory, jobs): (Arc<dyn SessionStore>, MemoryBank, Arc<dyn JobStore>) =
        match ocg_postgres::database_url(&config)? {
            // Sessions, memories and jobs in PostgreSQL (memories on pgvector,
            // embedded by the embedding service), shared with the other agents
            // of it.
            Some(url) => {
                let pool = ocg_postgres::open_in_background(url.expose())?;
                (
                    Arc::new(PgSessionStore::new(pool.clone())),
                    MemoryBank::new(Arc::new(PgVectorStore::new(pool.clone(), embeddings))),
                    Arc::new(PgJobStore::new(pool)),
                )
            }
            None => (
                Arc::new(SqliteSessionStore::open(&settings.database)?),
                MemoryBank::new(embeddings),
                Arc::new(SqliteJobStore::open(&settings.database)?),
            ),
        };
    let workspace = Arc::new(Workspace::new(&settings.workspace, &settings.protected)?);
    let schedules = ScheduleStore::new(jobs, Arc::new(SystemClock));
    let builtin = tools::builtin(
        workspace,
        &settings.tools,
        Some(memory.clone()),
        store.clone(),
        Some(schedules.clone()),
    );
    let processes = builtin.processes.clone();
    let mcp = mcp_servers(&settings);
    let registry = ToolRegistry::with_mcp(builtin.tools, settings.tools.clone(), mcp.clone())?;
    tracing::info!(
        workspace = %settings.workspace.display(),
        tools = %registry.names().join(","),
        "tools ready"
    );
    let runtime = AgentRuntime::new(
        provider,
        store,
        Arc::new(registry),
        Some(memory),
        settings.runtime.clone(),
    )
    .with_schedules(schedules.clone())
    .with_mcp(mcp.clone());
    let runtime = match sandbox_check(&settings) {
        Some(check) => runtime.with_check(check),
        None => runtime,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let tcp = settings.tcp.clone().map(|(addr, token)| {
        let router = server::router_with_token(runtime.clone(), token);
        tokio::spawn(server::serve_tcp(addr, router, until_stopped()))
    });
    let _release = runtime.release_memory_when_idle(std::time::Duration::from_secs(1));
    let agent: Arc<dyn Agent> = Arc::new(runtime.clone());
    let scheduler = settings.scheduler.clone().map(|config| {
        let scheduler = Scheduler::new(schedules.clone(), agent.clone(), config);
        tracing::info!(owner = scheduler.owner(), "scheduler running");
        scheduler.spawn(until_stopped())
    });
    let heartbeat = settings.heartbeat.clone().map(|config| {
        tracing::info!(every = ?config.every, session = %config.session, "heartbeat on");
        let owner = format!("heartbeat:{}", std::process::id());
        spawn_heartbeat(
            config,
            schedules.clone(),
            agent.clone(),
            owner,
            until_stopped(),
        )
    });
    let unix = tokio::spawn(socket.serve(server::router(runtime), until_stopped()));
    shutdown.await;
    let _ = stop.send(true);
    schedules.close();
    if let Some(scheduler) = scheduler {
        scheduler.await?;
    }
    if let Some(heartbeat) = heartbeat {
        heartbeat.await?;
    }
    processes.shutdown(std::time::Duration::from_secs(2)).await;
    mcp.shutdown().await;
    unix.await??;
    if let Some(tcp) = tcp {
        tcp.await??;
    }
    Ok(())
}

/// The MCP servers of `mcp.json`, starting. A file that cannot be used is
/// logged and reported on the health; the agent runs without them.
fn mcp_servers(settings: &AgentSettings) -> McpServers {
    let config = match McpConfig::load(&settings.mcp_config) {
        Ok(Some(config)) => config,
        Ok(None) => return McpServers::none(),
        Err(error) => {
            tracing::error!(%error, "MCP servers not started");
            return McpServers::invalid(&error);
        }
    };
    let launcher = Launcher {
        workspace: settings.workspace.clone(),
        homes: settings.mcp_homes.clone(),
        sandbox: settings.tools.sandbox.clone(),
        protected: settings.protected.clone(),
        allow_private: settings.tools.web_allow_private,
    };
    let policy = settings.tools.clone();
    let servers = McpServers::start(
        config,
        launcher,
        Arc::new(move |server, name| policy.allows_mcp(server, name)),
    );
    tracing::info!(servers = %servers.names().join(","), "MCP servers starting");
    servers
}

/// Whether `exec`/`process` programs run confined, for `/health` and
/// `ocg status`; `None` when neither tool is offered.
fn sandbox_check(settings: &AgentSettings) -> Option<HealthCheck> {
    let tools = &settings.tools;
    if !tools.allows("exec", ToolGroup::Exec) && !tools.allows("process", ToolGroup::Exec) {
        return None;
    }
    Some(match &tools.sandbox {
        ExecSandbox::Kernel { helper, network } => match ocg_process::sandbox::probe(helper) {
            Ok(()) => HealthCheck::ok(
                "sandbox",
                Some(format!(
                    "programs confined by landlock and seccomp{}",
                    if *network {
                        ", network allowed"
                    } else {
                        ", no network"
                    }
                )),
            ),
            Err(why) => {
                tracing::error!(%why, "programs cannot be confined; exec and process will fail");
                HealthCheck::failing("sandbox", format!("unavailable: {why}"))
            }
        },
        ExecSandbox::Off => {
            tracing::warn!("OCG_EXEC_SANDBOX=off: exec and process run programs unconfined");
            HealthCheck::failing(
                "sandbox",
                "off: exec and process run programs unconfined (OCG_EXEC_SANDBOX=off)",
            )
        }
        ExecSandbox::Unconfigured => HealthCheck::failing("sandbox", "no sandbox helper"),
    })
}

//! `ocg-gateway`: the gateway service, and a small CLI of its own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ocg_agent_lib::AgentClient;
use ocg_agent_lib::mcp::McpServer;
use ocg_core::config::{Config, Sources};
use ocg_core::{Channel, ChannelStateStore, Fence};
use ocg_gateway_lib::access::Pairing;
use ocg_gateway_lib::agents::AgentPool;
use ocg_gateway_lib::channels::{ChannelBridge, MisconfiguredChannel};
use ocg_gateway_lib::deliveries::DeliveryPump;
use ocg_gateway_lib::discord::DiscordChannel;
use ocg_gateway_lib::email::EmailChannel;
use ocg_gateway_lib::irc::IrcChannel;
use ocg_gateway_lib::journal;
use ocg_gateway_lib::lease::{CHANNELS_LEASE, Lease, LeasedChannel};
use ocg_gateway_lib::matrix::MatrixChannel;
use ocg_gateway_lib::slack::SlackChannel;
use ocg_gateway_lib::telegram::TelegramChannel;
use ocg_gateway_lib::{GatewayError, GatewaySettings, GatewayState, ROUTES};
use ocg_postgres::PgChannelState;
use ocg_process::secrets::{self, TokenSource};
use tracing_subscriber::EnvFilter;

mod migrate;

/// jemalloc instead of glibc's allocator: the memory of a spike (10,000
/// WebSockets that closed) goes back to the system (see docs/gateway.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// OCG gateway: web UI, OpenAI-compatible API and WebSocket chat on 127.0.0.1:55003.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Bind address (OCG_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port (OCG_PORT).
    #[arg(long)]
    port: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show or replace the UI token.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Validate the config and exit.
    Check,
    /// List the routes and who may call them.
    Routes,
    /// Copy the channel journals into PostgreSQL (the gateway stopped).
    Migrate {
        /// The database (postgres://…); OCG_DATABASE_URL when absent.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print the token (creating one if none is configured).
    Show,
    /// Replace the token in the config file; a running gateway must be restarted.
    Rotate,
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

/// A channel as the gateway runs it, or why it could not be set up.
fn shared<C: Channel + 'static>(
    channel: Result<C, ocg_gateway_lib::GatewayError>,
) -> Result<Arc<dyn Channel>, ocg_gateway_lib::GatewayError> {
    channel.map(|c| Arc::new(c) as Arc<dyn Channel>)
}

async fn run(args: Args) -> anyhow::Result<()> {
    // First, so that a SIGTERM at any later moment is a graceful shutdown.
    let shutdown = ocg_process::shutdown_signal();
    let config = Config::load(
        &Sources::from_process_env()
            .with_file(args.config)
            .flag("OCG_HOST", args.host)
            .flag("OCG_PORT", args.port),
    )?;
    // Everything written from here on holds user data: owner only.
    ocg_process::private::make_private(&config)?;
    let settings = GatewaySettings::from_config(&config)?;
    match args.command {
        Some(Command::Migrate { to }) => {
            let url = ocg_postgres::migration_target(to, &config)?;
            return migrate::run(&config, &url).await;
        }
        Some(Command::Routes) => {
            for (method, path, access) in ROUTES {
                println!("{method:<7} {path:<32} {access}");
            }
            return Ok(());
        }
        Some(Command::Check) => {
            println!(
                "config ok: {}",
                config
                    .file()
                    .map_or("defaults and environment".into(), |f| f
                        .display()
                        .to_string())
            );
            println!("listen: {}", config.gateway_url());
            match &settings.agents {
                Some(agents) => println!("agents: {} over TCP", agents.addrs.join(", ")),
                None => println!("agent socket: {}", config.agent_socket.display()),
            }
            match &settings.telegram {
                Some(telegram) => println!(
                    "telegram: {:?}, {} allowed chat(s)",
                    telegram.mode,
                    telegram.allowed_chats.len()
                ),
                None => println!("telegram: off (no TELEGRAM_BOT_TOKEN)"),
            }
            match &settings.irc {
                Some(irc) => println!(
                    "irc: {}:{} as {}, {} channel(s), {} allowed",
                    irc.host,
                    irc.port,
                    irc.nick,
                    irc.channels.len(),
                    irc.allowed.len()
                ),
                None => println!("irc: off (no IRC_SERVER)"),
            }
            match &settings.matrix {
                Some(matrix) => println!(
                    "matrix: {} as {}, {} allowed",
                    matrix.homeserver,
                    matrix.user_id,
                    matrix.allowed.len()
                ),
                None => println!("matrix: off (no MATRIX_HOMESERVER)"),
            }
            match &settings.email {
                Some(email) => println!(
                    "email: {} via {}:{} / {}:{}, {} allowed",
                    email.from,
                    email.imap.0,
                    email.imap.1,
                    email.smtp.0,
                    email.smtp.1,
                    email.allowed.len()
                ),
                None => println!("email: off (no EMAIL_IMAP_SERVER)"),
            }
            match &settings.discord {
                Some(discord) => println!("discord: {} allowed", discord.allowed.len()),
                None => println!("discord: off (no DISCORD_BOT_TOKEN)"),
            }
            match &settings.slack {
                Some(slack) => println!(
                    "slack: {:?} mode, {} allowed",
                    slack.mode,
                    slack.allowed.len()
                ),
                None => println!("slack: off (no SLACK_BOT_TOKEN)"),
            }
            for (name, error) in &settings.channel_errors {
                println!("{name}: misconfigured: {error}");
            }
            return Ok(());
        }
        Some(Command::Token {
            action: TokenAction::Show,
        }) => {
            let (token, source) = secrets::ensure_token(&config, "OCG_UI_TOKEN")?;
            if let TokenSource::Generated(path) = source {
                eprintln!("created a new token in {}", path.display());
            }
            println!("{}", token.expose());
            return Ok(());
        }
        Some(Command::Token {
            action: TokenAction::Rotate,
        }) => {
            let path = secrets::token_file(&config);
            secrets::rotate_token(&path, "OCG_UI_TOKEN")?;
            println!(
                "new token written to {} (OCG_UI_TOKEN); restart the gateway to use it",
                path.display()
            );
            return Ok(());
        }
        None => {}
    }

    // The data dir (channel journals) is this process's until it exits.
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "gateway")?;
    let (token, source) = secrets::ensure_token(&config, "OCG_UI_TOKEN")?;
    let token = token.expose().to_owned();
    if let TokenSource::Generated(path) = &source {
        tracing::info!(file = %path.display(), "generated a UI token (OCG_UI_TOKEN); `ocg-gateway token show` prints it");
    }
    let agent: Arc<dyn ocg_core::Agent> = match &settings.agents {
        // Several agents over one shared store: round robin, failing over.
        Some(agents) => {
            let members = agents
                .addrs
                .iter()
                .map(|addr| {
                    let client = AgentClient::tcp(addr, agents.token.expose())?;
                    Ok((addr.clone(), Arc::new(client) as Arc<dyn ocg_core::Agent>))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            tracing::info!(agents = ?agents.addrs, "using several agents over TCP");
            let pool = Arc::new(AgentPool::new(members)?);
            drop(pool.probe_every(std::time::Duration::from_secs(2)));
            pool
        }
        None => Arc::new(AgentClient::new(&config.agent_socket)?),
    };
    let mcp_hosts = mcp_allowed_hosts(settings.addr, !settings.trusted_proxies.is_empty());
    let mut state = GatewayState::new(agent.clone(), token.clone())
        .with_trusted_proxies(token, settings.trusted_proxies.clone())
        .with_mcp(McpServer::new(agent.clone()).http_service(mcp_hosts));
    if let Some(hooks) = settings.hooks.clone() {
        state = state.with_hooks_in(hooks.token.expose().to_owned(), hooks.session_prefixes);
    }
    // Strangers who write to a channel get a code; approvals go to env.config.
    let pairing = if settings.pairing {
        let pairing = Arc::new(Pairing::open(
            &config.data_dir.join("channels").join("pairing.json"),
            Some(secrets::token_file(&config)),
        )?);
        state = state.with_pairing(pairing.clone());
        Some(pairing)
    } else {
        None
    };
    let mut channels = tokio::task::JoinSet::new();
    let deliveries = config
        .data_dir
        .join("channels")
        .join(journal::DELIVERIES_FILE);
    let database = ocg_postgres::database_url(&config)?;
    let mut lease = None;
    match database {
        // Several gateways share the store: the lease holder runs the channels.
        Some(url) => {
            let store: Arc<dyn ChannelStateStore> = Arc::new(PgChannelState::new(
                ocg_postgres::open_in_background(url.expose())?,
            ));
            let fence = Fence {
                lease: CHANNELS_LEASE.into(),
                holder: ocg_process::instance_id(),
            };
            let ttl = config
                .raw()
                .parse("OCG_CHANNEL_LEASE_SECS", |v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|s| (3..=3600).contains(s))
                        .ok_or_else(|| "seconds from 3 to 3600".to_owned())
                })?
                .unwrap_or(15);
            // The journals' calls get a pool of their own (see share_journals).
            let journals = Arc::new(PgChannelState::new(ocg_postgres::connect(url.expose())?));
            journal::share_journals(journals, fence.clone())?;
            let standby: Vec<Arc<LeasedChannel>> = channel_names(&settings)
                .into_iter()
                .map(|name| Arc::new(LeasedChannel::new(name)))
                .collect();
            for channel in &standby {
                state = state.with_channel(channel.clone());
            }
            let held = Arc::new(Lease::new(
                store,
                fence,
                std::time::Duration::from_secs(ttl),
            ));
            lease = Some(held.clone());
            let (agent, settings) = (agent.clone(), settings.clone());
            channels.spawn(async move {
                held.run_while_held(|| {
                    let built = build_channels(&settings, &pairing);
                    let pump = DeliveryPump::new(agent.clone(), built.running(), &deliveries);
                    // A journal the store could not give: let the lease go
                    // and try again, rather than hold it with channels down.
                    let retry = built.journal_failed || pump.is_err();
                    if let Err(error) = &pump {
                        tracing::error!("scheduled answers are not delivered: {error}");
                    }
                    for slot in &standby {
                        slot.set(built.get(slot.name()).filter(|_| !retry));
                    }
                    let standby = StandbyWhenDropped(standby.clone());
                    let agent = agent.clone();
                    async move {
                        let _standby = standby;
                        if retry {
                            tracing::warn!("a channel journal could not be read; giving the lease up to try again");
                            return;
                        }
                        run_channels(agent, built, pump.ok()).await;
                    }
                })
                .await;
            });
        }
        None => {
            let built = build_channels(&settings, &pairing);
            for channel in built.all() {
                state = state.with_channel(channel);
            }
            // What the agent's scheduler sends to chats goes out through them.
            let pump = DeliveryPump::new(agent.clone(), built.running(), &deliveries)?;
            let agent = agent.clone();
            channels.spawn(async move { run_channels(agent, built, Some(pump)).await });
        }
    }
    let router = ocg_gateway_lib::router(state);
    // Channels stop as soon as the shutdown signal arrives (an update being
    // answered is answered again after the restart); HTTP requests drain.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(());
    };
    let channels = async move {
        let _ = stopped.await;
        channels.shutdown().await;
        // Another gateway takes the channels over at once.
        if let Some(lease) = lease {
            lease.release().await;
        }
    };
    let (served, ()) = tokio::join!(
        ocg_gateway_lib::serve(settings.addr, settings.allow_public_bind, router, shutdown),
        channels
    );
    served?;
    Ok(())
}

/// The channels the settings name, each set up (its journal opened) or
/// why it could not be.
struct BuiltChannels {
    running: Vec<(String, Arc<dyn Channel>)>,
    failed: Vec<Arc<dyn Channel>>,
    /// Whether a channel's journal could not be opened (with a shared
    /// store, a database that failed: worth another try, not a tenure).
    journal_failed: bool,
}

impl BuiltChannels {
    fn all(&self) -> Vec<Arc<dyn Channel>> {
        self.running
            .iter()
            .map(|(_, c)| c.clone())
            .chain(self.failed.iter().cloned())
            .collect()
    }

    fn running(&self) -> Vec<Arc<dyn Channel>> {
        self.running.iter().map(|(_, c)| c.clone()).collect()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Channel>> {
        self.all().into_iter().find(|c| c.name() == name)
    }
}

/// How one channel of the settings is set up (its journal opened).
type Setup<'a> = Box<dyn Fn() -> Result<Arc<dyn Channel>, GatewayError> + 'a>;

/// The channels `settings` configure, by name, each with its setup.
fn configured<'a>(
    settings: &'a GatewaySettings,
    pairing: &'a Option<Arc<Pairing>>,
) -> Vec<(&'static str, Setup<'a>)> {
    let pairing = move || pairing.clone();
    let mut setups: Vec<(&'static str, Setup<'a>)> = Vec::new();
    // Each channel's setup: its type made from its settings, with pairing.
    macro_rules! setup {
        ($name:literal, $settings:expr, $channel:ty) => {
            if let Some(c) = &$settings {
                let make =
                    move || shared(<$channel>::new(c.clone()).map(|c| c.with_pairing(pairing())));
                setups.push(($name, Box::new(make)));
            }
        };
    }
    setup!("telegram", settings.telegram, TelegramChannel);
    setup!("irc", settings.irc, IrcChannel);
    setup!("matrix", settings.matrix, MatrixChannel);
    setup!("email", settings.email, EmailChannel);
    setup!("discord", settings.discord, DiscordChannel);
    setup!("slack", settings.slack, SlackChannel);
    setups
}

/// The names of the channels `settings` configure (misconfigured included).
fn channel_names(settings: &GatewaySettings) -> Vec<String> {
    let configured = configured(settings, &None);
    settings
        .channel_errors
        .iter()
        .map(|(name, _)| name.clone())
        .chain(configured.into_iter().map(|(name, _)| name.to_owned()))
        .collect()
}

/// Set up every channel of `settings`.
fn build_channels(settings: &GatewaySettings, pairing: &Option<Arc<Pairing>>) -> BuiltChannels {
    let mut built = BuiltChannels {
        running: Vec::new(),
        failed: Vec::new(),
        journal_failed: false,
    };
    let fail = |built: &mut BuiltChannels, name: &str, error: String| {
        tracing::error!(channel = name, "channel not started: {error}");
        built
            .failed
            .push(Arc::new(MisconfiguredChannel::new(name, error)));
    };
    for (name, error) in &settings.channel_errors {
        fail(&mut built, name, error.clone());
    }
    for (name, setup) in configured(settings, pairing) {
        match setup() {
            Ok(channel) => built.running.push((name.to_owned(), channel)),
            Err(error) => {
                built.journal_failed |= matches!(error, GatewayError::Journal { .. });
                fail(&mut built, name, error.to_string());
            }
        }
    }
    built
}

/// Bridge each running channel to `agent`, and run `pump` (the
/// scheduler's answers sent through them), until all end.
async fn run_channels(
    agent: Arc<dyn ocg_core::Agent>,
    built: BuiltChannels,
    pump: Option<DeliveryPump>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, channel) in built.running {
        let bridge = Arc::new(ChannelBridge::new(agent.clone(), channel));
        tasks.spawn(async move {
            if let Err(error) = bridge.run().await {
                tracing::error!(channel = %name, "channel stopped: {error}");
            }
        });
    }
    if let Some(pump) = pump {
        tasks.spawn(pump.run());
    }
    while tasks.join_next().await.is_some() {}
}

/// Sets the leased channels back to standby when the channels stop.
struct StandbyWhenDropped(Vec<Arc<LeasedChannel>>);

impl Drop for StandbyWhenDropped {
    fn drop(&mut self) {
        for channel in &self.0 {
            channel.set(None);
        }
    }
}

/// The `Host` names `/mcp` answers to, against DNS rebinding: loopback and
/// the bound address. Any (the token still guards it) when bound to every
/// address or behind a proxy, whose public name is not known here.
fn mcp_allowed_hosts(addr: std::net::SocketAddr, behind_proxy: bool) -> Vec<String> {
    if addr.ip().is_unspecified() || behind_proxy {
        return Vec::new();
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    let bound = addr.ip().to_string();
    if !hosts.contains(&bound) {
        hosts.push(bound);
    }
    hosts
}

//! `ocg`: the process manager of the three OCG services.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ocg_agent_lib::AgentClient;
use ocg_agent_lib::terminal::TerminalChat;
use ocg_core::StopOutcome;
use ocg_core::config::{Config, Sources};
use ocg_process::ownership::{LockError, OwnerLock};
use ocg_process::stack::{self, SERVICES, Stack};
use ocg_process::{ForegroundSupervisor, RestartPolicy};
use tracing_subscriber::EnvFilter;

mod cron;
mod mcp;
mod pair;

/// OCG: a local-first AI agent platform. Starts, stops and inspects its services.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// env.config file (default ./env.config when present; also OCG_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory of pid files (OCG_PID_DIR, default /tmp/ocg).
    #[arg(long, global = true)]
    pid_dir: Option<PathBuf>,
    /// Directory of service logs (OCG_LOG_DIR, default /tmp).
    #[arg(long, global = true)]
    log_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stop running services, then start embedding, agent and gateway.
    Start {
        /// Stay attached: restart crashed services, stop all on Ctrl-C.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop gateway, agent and embedding.
    Stop {
        /// SIGKILL at once instead of SIGTERM, SIGINT, SIGKILL.
        #[arg(long)]
        force: bool,
    },
    /// Stop, then start.
    Restart,
    /// One line per service and the overall health; exit 0 only when all is well.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a service's log.
    Logs {
        /// embedding, agent or gateway.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(SERVICES))]
        service: String,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Chat with the agent in the terminal (`echo hi | ocg chat` prints only the reply).
    #[command(alias = "agent")]
    Chat {
        /// The session to continue.
        #[arg(long, default_value = "cli:default")]
        session: String,
        /// Send this message and print the reply, instead of reading input.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Scheduled jobs: add, list, rm, runs, run, pause, resume.
    Cron {
        #[command(subcommand)]
        command: cron::CronCommand,
    },
    /// Copy this install's sessions, jobs, memories and channel journals into
    /// PostgreSQL, for several agents and gateways sharing it (`ocg stop` first).
    Migrate {
        /// The database (postgres://…); OCG_DATABASE_URL of env.config when
        /// absent, which keeps the password out of the process list.
        #[arg(long)]
        to: Option<String>,
    },
    /// Pairing: approve or deny senders who were given a code (list, approve, deny).
    Pair {
        #[command(subcommand)]
        command: pair::PairCommand,
    },
    /// OCG's memory and chat as an MCP server on stdio; `ocg mcp list` shows the agent's MCP servers.
    Mcp {
        #[command(subcommand)]
        command: Option<mcp::McpCommand>,
    },
    /// Print the version.
    Version,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Version = cli.command {
        println!("ocg {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    let path_flag = |p: Option<PathBuf>| p.map(|p| p.display().to_string());
    let sources = Sources::from_process_env()
        .flag("OCG_PID_DIR", path_flag(cli.pid_dir))
        .flag("OCG_LOG_DIR", path_flag(cli.log_dir));
    let config = match Config::load(&sources.clone().with_file(cli.config)) {
        Ok(config) => config,
        // A broken env.config must not keep running services from stopping:
        // the pid dir (flags, environment or default) is all `stop` needs.
        Err(error) if matches!(cli.command, Command::Stop { .. }) => {
            eprintln!("warning: {error}; stopping without the config file");
            Config::load(&sources.with_file(Some(PathBuf::from("/dev/null"))))?
        }
        Err(error) => return Err(error.into()),
    };
    // Pid files and logs, and the services it starts: owner only.
    ocg_process::private::private_umask();
    let exe = std::env::current_exe().context("cannot locate the ocg executable")?;
    let bin_dir = exe
        .parent()
        .context("the ocg executable has no directory")?;
    let gateway_url = config.gateway_url();
    let config_socket = config.agent_socket.clone();
    // Loading a local model may take as long as starting a service.
    let wait = Duration::from_secs(config.start_timeout_secs.max(60));
    // One start, stop or restart of an install at a time.
    let _one_at_a_time = match cli.command {
        Command::Start { .. } | Command::Stop { .. } | Command::Restart => {
            let path = config.pid_dir.join("ocg.lock");
            match OwnerLock::acquire(&path, "this install") {
                Ok(lock) => Some(lock),
                Err(LockError::Held { holder, .. }) => anyhow::bail!(
                    "another `ocg start`, `stop` or `restart`{} is running on this install ({})",
                    holder.map(|p| format!(" (PID {p})")).unwrap_or_default(),
                    path.display()
                ),
                Err(error) => return Err(error.into()),
            }
        }
        _ => None,
    };
    if let Command::Pair { command } = cli.command {
        return pair::run(&config, command).await;
    }
    if let Command::Migrate { to } = cli.command {
        // The agent's stores (sessions, jobs, memories), then the gateway's
        // (the channel journals), each by its own binary with this config.
        for service in ["ocg-agent", "ocg-gateway"] {
            let mut migrate = tokio::process::Command::new(bin_dir.join(service));
            if let Some(file) = config.file() {
                migrate.arg("--config").arg(file);
            }
            migrate.arg("migrate");
            // In the child's environment, not its arguments, which any local
            // user can read.
            if let Some(url) = &to {
                migrate.env("OCG_DATABASE_URL", url);
            }
            let status = migrate
                .status()
                .await
                .with_context(|| format!("cannot run {service}"))?;
            if !status.success() {
                return Ok(ExitCode::FAILURE);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (pid_dir, log_dir) = (config.pid_dir.clone(), config.log_dir.clone());
    let stack = Stack::new(config, bin_dir);

    match cli.command {
        Command::Start { foreground: false } => start(&stack, &gateway_url, wait).await,
        Command::Start { foreground: true } => {
            print_stops(&stack.stop(false).await);
            let processes = ocg_process::PidFileSupervisor::new(&pid_dir, &log_dir);
            let supervisor = ForegroundSupervisor::new(processes, RestartPolicy::default());
            println!("Starting in the foreground; Ctrl-C stops all services.");
            supervisor
                .run(&stack.specs(), ocg_process::shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { force } => {
            let outcomes = stack.stop(force).await;
            print_stops(&outcomes);
            Ok(if outcomes.iter().all(|(_, o)| o.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Restart => start(&stack, &gateway_url, wait).await,
        Command::Status { json } => {
            let status = stack.status().await;
            if json {
                println!("{:#}", status.to_json());
            } else {
                print!("{}", status.render());
            }
            Ok(if status.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Logs {
            service,
            follow,
            lines,
        } => {
            let path = stack.log_file(&service);
            let mut out = std::io::stdout().lock();
            for line in ocg_process::log_file::tail(&path, lines)
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                writeln!(out, "{line}")?;
            }
            if follow {
                // Ends when stdout closes (e.g. `| head`) or on Ctrl-C.
                tokio::select! {
                    result = ocg_process::log_file::follow(&path, &mut out) => {
                        if let Err(error) = result {
                            if error.kind() != std::io::ErrorKind::BrokenPipe {
                                return Err(error.into());
                            }
                        }
                    }
                    () = ocg_process::shutdown_signal() => {}
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { session, message } => chat(&config_socket, session, message).await,
        Command::Cron { command } => cron::run(&config_socket, command).await,
        Command::Mcp { command } => mcp::run(&config_socket, command).await,
        Command::Version => unreachable!("handled before config resolution"),
        Command::Pair { .. } | Command::Migrate { .. } => {
            unreachable!("handled before the stack is built")
        }
    }
}

/// `ocg chat`: interactive on a terminal, one message and its reply in a pipe.
async fn chat(
    socket: &std::path::Path,
    session: String,
    message: Option<String>,
) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let mut chat = TerminalChat::new(AgentClient::new(socket)?, session);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let message = match message {
        Some(message) => Some(message),
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Some(text)
        }
        None => None,
    };
    match message {
        Some(text) if text.trim().is_empty() => {
            anyhow::bail!("nothing to send: the message is empty")
        }
        Some(text) => Ok(if chat.ask(text.trim(), &mut out, &mut err).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        None => {
            chat.run(std::io::stdin().lock(), &mut out, &mut err)
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The documented start: stop what the pid dir records, then start in order,
/// then wait for the local model so that "running" means a question is
/// answered.
async fn start(stack: &Stack, gateway_url: &str, wait: Duration) -> anyhow::Result<ExitCode> {
    print_stops(&stack.stop(false).await);
    let result = stack
        .start(|name, pid| {
            println!("{}: started (PID {pid})", stack::display_name(name));
        })
        .await;
    if let Err(failure) = result {
        eprintln!("{failure}");
        return Ok(ExitCode::FAILURE);
    }
    let terminal = std::io::stdout().is_terminal();
    let mut announced = false;
    let status = stack
        .wait_settled(wait, |elapsed, starting| {
            let what = starting.first().map_or("", String::as_str);
            if terminal {
                print!("\rwaiting: {what} ({:.1} s)\x1b[K", elapsed.as_secs_f32());
                let _ = std::io::stdout().flush();
            } else if !announced {
                println!("waiting: {what}");
            }
            announced = true;
        })
        .await;
    if terminal && announced {
        println!();
    }
    let problems = status.problems();
    if problems.is_empty() {
        println!("OCG is running. Gateway: {gateway_url}/");
    } else {
        // The services run (and `ocg status` exits non-zero until all is well).
        println!("OCG is running at {gateway_url}/ but not all is well:");
        for problem in problems {
            println!("  {problem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_stops(outcomes: &[(String, ocg_core::Result<StopOutcome>)]) {
    for (name, outcome) in outcomes {
        match stack::describe_stop(name, outcome) {
            Ok(line) => println!("{line}"),
            Err(line) => eprintln!("{line}"),
        }
    }
}

//! `ocg cron`: scheduled jobs through the agent's socket.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use ocg_agent_lib::AgentClient;
use ocg_core::schedule::{
    DeliveryTarget, Job, JobPatch, JobRun, JobSession, MissedPolicy, NewJob, Schedule,
};
use ocg_core::{Agent, ChatTarget};

/// What `ocg cron` does.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Create a job (one of --at, --every, --cron).
    Add(Box<AddArgs>),
    /// List jobs with their next run and last outcome.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a job and its runs.
    #[command(alias = "delete")]
    Rm {
        /// The job's id.
        id: String,
    },
    /// A job's latest runs, newest first.
    Runs {
        /// The job's id.
        id: String,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a job now (besides its schedule).
    Run {
        /// The job's id.
        id: String,
    },
    /// Pause a job.
    Pause {
        /// The job's id.
        id: String,
    },
    /// Resume a paused job.
    Resume {
        /// The job's id.
        id: String,
    },
}

/// `ocg cron add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Once: RFC 3339, a local "2026-12-24 09:00", or "in 10m".
    #[arg(long, group = "when")]
    at: Option<String>,
    /// Repeating: an interval such as 30m, 1h, 1d.
    #[arg(long, group = "when")]
    every: Option<String>,
    /// Repeating: a 5-field cron expression such as "0 8 * * 1-5".
    #[arg(long, group = "when")]
    cron: Option<String>,
    /// The cron expression's IANA time zone (default: this machine's).
    #[arg(long, requires = "cron")]
    tz: Option<String>,
    /// The prompt of each run.
    #[arg(short, long)]
    message: String,
    /// A name to show.
    #[arg(long)]
    name: Option<String>,
    /// Run in this session (default: a fresh one each run).
    #[arg(long)]
    session: Option<String>,
    /// Deliver the reply to this Telegram chat id (`--chat telegram:ID`).
    #[arg(long, conflicts_with_all = ["webhook", "chat"])]
    telegram: Option<String>,
    /// Deliver the reply to a chat of a channel: `CHANNEL:CHAT`, e.g.
    /// `discord:1234567890`, `slack:C0123456`, `matrix:!room:example.org`.
    #[arg(long, conflicts_with = "webhook", value_parser = chat_target)]
    chat: Option<(String, String)>,
    /// POST the reply to this URL.
    #[arg(long)]
    webhook: Option<String>,
    /// Skip occurrences missed while the agent was down (default: run once).
    #[arg(long)]
    skip_missed: bool,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
}

/// `CHANNEL:CHAT` (split at the first `:`, so Matrix room ids keep theirs).
fn chat_target(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((channel, chat))
            if !chat.is_empty()
                && !channel.is_empty()
                && channel.bytes().all(|b| b.is_ascii_lowercase()) =>
        {
            Ok((channel.to_owned(), chat.to_owned()))
        }
        _ => Err(format!(
            "{value:?} is not CHANNEL:CHAT (telegram:123456, discord:1234567890, slack:C0123456)"
        )),
    }
}

/// Unix ms as local time (`2026-12-24 09:00:00 CET`).
fn local_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_default()
}

fn schedule_text(schedule: &Schedule) -> String {
    match schedule {
        Schedule::At { at } => format!("at {at}"),
        Schedule::Every { every } => format!("every {every}"),
        Schedule::Cron { expr, tz } => format!("cron {expr} {}", tz.as_deref().unwrap_or("")),
    }
}

fn print_job(job: &Job) {
    let next = job
        .next_run_ms
        .map(local_time)
        .unwrap_or_else(|| "-".to_owned());
    let last = job
        .last_status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "-".to_owned());
    let state = if job.enabled { "on" } else { "paused" };
    println!(
        "{}  {:<6}  next {:<24}  last {:<11}  {}  {}",
        job.id,
        state,
        next,
        last,
        schedule_text(&job.schedule),
        job.name
    );
}

fn print_run(run: &JobRun) {
    let status = format!("{:?}", run.status).to_lowercase();
    let text = run
        .reply
        .as_deref()
        .or(run.error.as_deref())
        .unwrap_or("")
        .replace('\n', " ");
    let text: String = text.chars().take(100).collect();
    println!(
        "{:>6}  {}  {:<11}  {:<8}  {:<10}  {}",
        run.id,
        local_time(run.started_at_ms),
        status,
        run.trigger,
        run.delivery.as_deref().unwrap_or("-"),
        text
    );
}

/// Run `command` against the agent on `socket`.
pub async fn run(socket: &std::path::Path, command: CronCommand) -> anyhow::Result<ExitCode> {
    let agent = AgentClient::new(socket)?;
    match command {
        CronCommand::Add(args) => {
            let schedule = match (args.at, args.every, args.cron) {
                (Some(at), _, _) => Schedule::At { at },
                (_, Some(every), _) => Schedule::Every { every },
                (_, _, Some(expr)) => Schedule::Cron { expr, tz: args.tz },
                _ => anyhow::bail!("say when: --at, --every or --cron"),
            };
            let chat = args
                .telegram
                .map(|chat| ("telegram".to_owned(), chat))
                .or(args.chat);
            let deliver = match (chat, args.webhook) {
                (Some((channel, chat)), _) => Some(DeliveryTarget::Chat {
                    channel,
                    target: ChatTarget::chat(chat),
                }),
                (_, Some(url)) => Some(DeliveryTarget::Webhook { url }),
                _ => None,
            };
            let job = agent
                .job_create(NewJob {
                    name: args.name,
                    schedule,
                    message: args.message,
                    session: args
                        .session
                        .map_or(JobSession::Isolated, |key| JobSession::Named { key }),
                    deliver,
                    enabled: !args.paused,
                    missed: if args.skip_missed {
                        MissedPolicy::Skip
                    } else {
                        MissedPolicy::RunOnce
                    },
                    disable_after_failures: 5,
                    origin: None,
                })
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print_job(&job);
            }
        }
        CronCommand::List { json } => {
            let jobs = agent.job_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else if jobs.is_empty() {
                println!("no jobs");
            } else {
                jobs.iter().for_each(print_job);
            }
        }
        CronCommand::Rm { id } => {
            agent.job_delete(&id).await?;
            println!("deleted {id}");
        }
        CronCommand::Runs { id, limit, json } => {
            let runs = agent.job_runs(&id, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                println!("no runs yet");
            } else {
                runs.iter().for_each(print_run);
            }
        }
        CronCommand::Run { id } => {
            let at = agent.job_run_now(&id).await?;
            println!("queued a run of {id} ({})", local_time(at));
        }
        CronCommand::Pause { id } => pause(&agent, &id, false).await?,
        CronCommand::Resume { id } => pause(&agent, &id, true).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn pause(agent: &AgentClient, id: &str, enabled: bool) -> anyhow::Result<()> {
    let patch = JobPatch {
        enabled: Some(enabled),
        ..JobPatch::default()
    };
    print_job(&agent.job_update(id, patch).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_is_a_channel_and_its_chat_id() {
        assert_eq!(
            chat_target("discord:1234567890"),
            Ok(("discord".into(), "1234567890".into()))
        );
        assert_eq!(
            chat_target("matrix:!room:example.org"),
            Ok(("matrix".into(), "!room:example.org".into()))
        );
        for bad in ["discord", "discord:", ":123", "Discord:1", "a b:1"] {
            assert!(chat_target(bad).is_err(), "{bad}");
        }
    }
}

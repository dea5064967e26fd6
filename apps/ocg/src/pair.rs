//! `ocg pair`: the senders waiting for approval, through the gateway's
//! `/api/pairing` (the gateway owns the channels and their allow-lists).

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use ocg_core::config::Config;
use serde_json::Value;

/// What `ocg pair` does.
#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// List the pending codes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow the sender who was given CODE (added to the channel's allow-list in env.config).
    Approve {
        /// The code the sender received.
        code: String,
    },
    /// Refuse the sender who was given CODE (they get no new code for an hour).
    Deny {
        /// The code the sender received.
        code: String,
    },
}

/// Run `command` against the gateway of `config`.
pub async fn run(config: &Config, command: PairCommand) -> anyhow::Result<ExitCode> {
    let (token, _) = ocg_process::secrets::ensure_token(config, "OCG_UI_TOKEN")?;
    let base = config.gateway_url();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let call = |method: reqwest::Method, path: String| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(token.expose())
    };
    let (request, action) = match &command {
        PairCommand::List { .. } => (call(reqwest::Method::GET, "/api/pairing".into()), None),
        PairCommand::Approve { code } => (
            call(
                reqwest::Method::POST,
                format!("/api/pairing/{}/approve", path_safe(code)),
            ),
            Some("approved"),
        ),
        PairCommand::Deny { code } => (
            call(
                reqwest::Method::POST,
                format!("/api/pairing/{}/deny", path_safe(code)),
            ),
            Some("denied"),
        ),
    };
    let response = request.send().await.with_context(|| {
        format!("the gateway at {base} is not reachable (is OCG running? `ocg status`)")
    })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the gateway refused");
        anyhow::bail!("{message} ({status})");
    }
    match (command, action) {
        (PairCommand::List { json: true }, _) => println!("{body:#}"),
        (PairCommand::List { json: false }, _) => print_list(&body),
        (_, Some(action)) => {
            let field = |name: &str| body[name].as_str().unwrap_or("?").to_owned();
            println!(
                "{action}: {} on {} ({})",
                field("sender"),
                field("channel"),
                field("entry")
            );
        }
        (_, None) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// A code as one path segment: only its letters and digits.
fn path_safe(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn print_list(body: &Value) {
    let requests = body.as_array().map(Vec::as_slice).unwrap_or_default();
    if requests.is_empty() {
        println!("no pairing requests are pending");
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!("{:<10} {:<10} {:<32} EXPIRES", "CODE", "CHANNEL", "SENDER");
    for request in requests {
        let text = |name: &str| request[name].as_str().unwrap_or("").to_owned();
        let minutes = request["expires_at_ms"]
            .as_u64()
            .map_or(0, |at| at.saturating_sub(now) / 60_000);
        println!(
            "{:<10} {:<10} {:<32} in {minutes} min",
            text("code"),
            text("channel"),
            text("sender")
        );
    }
}

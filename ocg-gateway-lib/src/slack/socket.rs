//! Socket Mode: one connection at a time (open, hello, envelopes and their
//! acknowledgements, disconnects), and the loop that reconnects.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ocg_core::config::Secret;
use ocg_core::{ChannelState, Error, Result};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{SlackChannel, Taken};
use crate::dispatch::Dispatcher;
use crate::reconnect::{Ended, Reconnect};
use crate::websocket::{Incoming, Socket};

/// How often a quiet socket is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A socket silent this long (pongs included) is dead.
const SILENT_LIMIT: Duration = Duration::from_secs(90);
/// A connection up this long counts as healthy (the backoff starts over).
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

impl SlackChannel {
    /// Connect, serve, and reconnect with backoff until a fatal error.
    pub(super) async fn socket_loop(
        &self,
        app_token: &Secret,
        dispatcher: &mut Dispatcher,
    ) -> Result<()> {
        let mut reconnect = Reconnect::new("slack", self.config.backoff);
        loop {
            let started = Instant::now();
            let ended = self.socket_connection(app_token, dispatcher).await;
            reconnect
                .after(&self.board, ended, started.elapsed() > HEALTHY_AFTER)
                .await?;
        }
    }

    async fn socket_connection(&self, app_token: &Secret, dispatcher: &mut Dispatcher) -> Ended {
        if let Err(ended) = self.identify().await {
            return ended;
        }
        let url = match self.api.open_connection(app_token).await {
            Ok(url) => url,
            Err(e) if e.is_unauthorized() || e.is_missing_scope() => {
                return Ended::Fatal(Error::InvalidInput(format!(
                    "Slack refused SLACK_APP_TOKEN ({e}): create an app-level token with connections:write under Basic Information, and turn Socket Mode on"
                )));
            }
            Err(e) => {
                return Ended::Lost {
                    why: format!("apps.connections.open: {e}"),
                    wait: e.retry_after(),
                };
            }
        };
        let mut socket = match Socket::connect(&url).await {
            Ok(socket) => socket,
            Err(e) => return Ended::lost(e),
        };
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        // Refusals (pairing codes) run beside the loop, which keeps reading
        // and acknowledging while they wait out a rate limit.
        let mut refusals = FuturesUnordered::new();
        let ended = loop {
            let incoming = tokio::select! {
                Some(()) = refusals.next(), if !refusals.is_empty() => continue,
                _ = ping.tick() => {
                    if socket.silent_for() > SILENT_LIMIT {
                        break Ended::lost("Socket Mode went silent: the connection is dead");
                    }
                    if let Err(e) = socket.ping().await {
                        break Ended::lost(e);
                    }
                    continue;
                }
                incoming = socket.next() => incoming,
            };
            let text = match incoming {
                Incoming::Text(text) => text,
                Incoming::Closed(code, reason) => {
                    let code =
                        code.map_or_else(|| "no close code".into(), |c| format!("close {c}"));
                    break Ended::lost(format!(
                        "Socket Mode closed the connection ({code}) {reason}"
                    ));
                }
            };
            let Ok(envelope) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let kind = envelope
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match kind {
                "hello" => {
                    self.board.set_state(ChannelState::Connected);
                    tracing::info!(channel = "slack", "connected in Socket Mode");
                }
                "disconnect" => {
                    let reason = envelope
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    // Dropped, not closed: Slack does not finish the
                    // close handshake.
                    drop(socket);
                    if reason == "link_disabled" {
                        break Ended::Fatal(Error::InvalidInput(
                            "Slack turned Socket Mode off for this app (link_disabled)".into(),
                        ));
                    }
                    // A refresh reconnects at once; too many sockets of
                    // this app (ten at most) waits the backoff.
                    let wait = (reason != "too_many_websockets").then_some(Duration::ZERO);
                    break Ended::Lost {
                        why: format!("Slack asked to reconnect ({reason})"),
                        wait,
                    };
                }
                _ => {
                    let Some(id) = envelope.get("envelope_id").and_then(Value::as_str) else {
                        continue;
                    };
                    let taken = match (kind, envelope.get("payload")) {
                        ("events_api", Some(payload)) => self.take(payload).await,
                        // Slash commands and interactions are not used:
                        // acknowledged so Slack does not send them again.
                        _ => Ok(Taken::Nothing),
                    };
                    match taken {
                        Ok(taken) => {
                            let ack = json!({"envelope_id": id}).to_string();
                            if let Err(e) = socket.send(ack).await {
                                break Ended::lost(e);
                            }
                            self.act(taken, dispatcher, &mut refusals);
                        }
                        // Not acknowledged: Slack sends it again.
                        Err(e) => break Ended::lost(format!("journal: {e}")),
                    }
                }
            }
            dispatcher.reap();
        };
        // A code being sent is given a moment to go out.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while refusals.next().await.is_some() {}
        })
        .await;
        ended
    }
}

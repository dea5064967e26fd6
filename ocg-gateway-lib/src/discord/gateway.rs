//! One Gateway connection at a time (hello, identify or resume,
//! heartbeats, events), and the loop around it that resumes or reconnects
//! with backoff.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use ocg_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};

use super::{DiscordChannel, INTENTS};
use crate::dispatch::Dispatcher;
use crate::lock;
use crate::reconnect::{Ended, Reconnect};
use crate::websocket::{Incoming, Socket};

/// How long Discord may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection up this long counts as healthy (the backoff starts over).
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// The close code of our own ends: 4000 and up keep the session resumable.
const RESUMABLE_CLOSE: u16 = 4000;

/// A session Discord can resume: it replays the events after `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Resume {
    pub session_id: String,
    pub seq: u64,
    /// `resume_gateway_url` from `READY`.
    pub url: String,
}

impl Resume {
    /// The journal's cursor: the session to resume after a restart.
    fn cursor(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn from_cursor(cursor: &str) -> Option<Resume> {
        serde_json::from_str(cursor).ok()
    }
}

/// A Gateway payload.
#[derive(Debug, Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// A random fraction in [0, 1), for the first heartbeat's jitter.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u16::from_le_bytes(bytes)) / 65_536.0
}

/// What a close code means: `Err` for the ones not worth retrying, else
/// whether the session can still be resumed.
fn close_code(code: Option<u16>) -> std::result::Result<bool, String> {
    match code {
        Some(4004) => Err(
            "Discord refused DISCORD_BOT_TOKEN (close 4004): copy the token from the Bot page of your application".into(),
        ),
        Some(4014) => Err(
            "Discord refused the intents the channel asked for (close 4014: disallowed intents)".into(),
        ),
        Some(code @ (4010..=4013)) => Err(format!(
            "Discord refused the connection's settings (close {code})"
        )),
        // Invalid sequence, session timed out: identify afresh.
        Some(4007 | 4009) => Ok(false),
        _ => Ok(true),
    }
}

impl DiscordChannel {
    /// Connect, serve, and resume or reconnect with backoff until a fatal
    /// error.
    pub(super) async fn connect_loop(&self, dispatcher: &mut Dispatcher) -> Result<()> {
        let mut resume = self
            .journal
            .cursor()
            .and_then(|cursor| Resume::from_cursor(&cursor));
        let mut reconnect = Reconnect::new("discord", self.config.backoff);
        loop {
            let started = Instant::now();
            let ended = self.connection(&mut resume, dispatcher).await;
            reconnect
                .after(&self.board, ended, started.elapsed() > HEALTHY_AFTER)
                .await?;
        }
    }

    /// Where to connect: the session's resume URL, else the one
    /// `GET /gateway/bot` gives (waiting when no identify is left).
    async fn gateway_url(&self, resume: Option<&Resume>) -> std::result::Result<String, Ended> {
        if lock(&self.bot_id).is_none() {
            match self.rest.me().await {
                Ok(id) => *lock(&self.bot_id) = Some(id),
                Err(e) if e.is_unauthorized() => return Err(fatal_token(&e)),
                Err(e) => return Err(lost(&e)),
            }
        }
        let url = match resume {
            Some(resume) => resume.url.clone(),
            None => {
                let gateway = match self.rest.gateway_bot().await {
                    Ok(gateway) => gateway,
                    Err(e) if e.is_unauthorized() => return Err(fatal_token(&e)),
                    Err(e) => return Err(lost(&e)),
                };
                if let Some(limit) = gateway.session_start_limit.filter(|l| l.remaining == 0) {
                    return Err(Ended::Lost {
                        why: "Discord's daily limit of new sessions is reached".into(),
                        wait: Some(Duration::from_millis(limit.reset_after)),
                    });
                }
                gateway.url
            }
        };
        Ok(format!("{}/?v=10&encoding=json", url.trim_end_matches('/')))
    }

    /// One connection, until it ends; `resume` follows the session.
    async fn connection(&self, resume: &mut Option<Resume>, dispatcher: &mut Dispatcher) -> Ended {
        let url = match self.gateway_url(resume.as_ref()).await {
            Ok(url) => url,
            Err(ended) => return ended,
        };
        let mut socket = match Socket::connect(&url).await {
            Ok(socket) => socket,
            Err(e) => return Ended::lost(e),
        };
        let interval = match tokio::time::timeout(HELLO_TIMEOUT, socket.next()).await {
            Ok(Incoming::Text(text)) => serde_json::from_str::<Payload>(&text)
                .ok()
                .filter(|p| p.op == 10)
                .and_then(|p| p.d.get("heartbeat_interval")?.as_u64())
                .filter(|ms| *ms > 0),
            Ok(Incoming::Closed(code, reason)) => {
                return self.closed(code, &reason, resume);
            }
            Err(_) => None,
        };
        let Some(interval) = interval.map(Duration::from_millis) else {
            return Ended::lost("the Gateway did not say Hello");
        };
        let mut seq = resume.as_ref().map(|r| r.seq);
        let hello = match resume.as_ref() {
            Some(r) => json!({"op": 6, "d": {
                "token": self.config.token.expose(),
                "session_id": r.session_id,
                "seq": r.seq,
            }}),
            None => json!({"op": 2, "d": {
                "token": self.config.token.expose(),
                "intents": INTENTS,
                "properties": {"os": std::env::consts::OS, "browser": "ocg", "device": "ocg"},
            }}),
        };
        if let Err(e) = socket.send(hello.to_string()).await {
            return Ended::lost(e);
        }
        let first = interval.mul_f64(jitter());
        let mut beat = tokio::time::interval_at(Instant::now() + first, interval);
        // A late tick is not followed by a burst of them (which would read
        // the first one's missing acknowledgement as a dead connection).
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut acked = true;
        // Refusals (pairing codes) run beside the loop, which keeps reading
        // and beating while they wait out a rate limit.
        let mut refusals = FuturesUnordered::new();
        let ended = loop {
            let incoming = tokio::select! {
                Some(()) = refusals.next(), if !refusals.is_empty() => continue,
                _ = beat.tick() => {
                    if !acked {
                        socket.close(RESUMABLE_CLOSE).await;
                        break Ended::lost("no heartbeat acknowledgement: the connection is dead");
                    }
                    acked = false;
                    if let Err(e) = socket.send(json!({"op": 1, "d": seq}).to_string()).await {
                        break Ended::lost(e);
                    }
                    continue;
                }
                incoming = socket.next() => incoming,
            };
            let text = match incoming {
                Incoming::Text(text) => text,
                Incoming::Closed(code, reason) => break self.closed(code, &reason, resume),
            };
            let Ok(payload) = serde_json::from_str::<Payload>(&text) else {
                continue;
            };
            if let Some(s) = payload.s {
                seq = Some(s);
                if let Some(resume) = resume.as_mut() {
                    resume.seq = s;
                }
            }
            match payload.op {
                0 => match self.dispatch_event(payload, seq, resume, dispatcher).await {
                    Ok(Some(stranger)) => refusals.push(self.refuse(stranger)),
                    Ok(None) => {}
                    Err(ended) => break ended,
                },
                1 => {
                    if let Err(e) = socket.send(json!({"op": 1, "d": seq}).to_string()).await {
                        break Ended::lost(e);
                    }
                }
                7 => {
                    socket.close(RESUMABLE_CLOSE).await;
                    break Ended::Lost {
                        why: "Discord asked to reconnect (op 7)".into(),
                        wait: Some(Duration::ZERO),
                    };
                }
                9 => {
                    if payload.d.as_bool() != Some(true) {
                        *resume = None;
                    }
                    socket.close(RESUMABLE_CLOSE).await;
                    // Discord asks for a wait of one to five seconds.
                    break Ended::Lost {
                        why: "Discord invalidated the session (op 9)".into(),
                        wait: Some(Duration::from_secs(1).mul_f64(1.0 + 4.0 * jitter())),
                    };
                }
                11 => acked = true,
                _ => {}
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

    /// An event (op 0); a stranger's message to refuse.
    async fn dispatch_event(
        &self,
        payload: Payload,
        seq: Option<u64>,
        resume: &mut Option<Resume>,
        dispatcher: &mut Dispatcher,
    ) -> std::result::Result<Option<super::Stranger>, Ended> {
        match payload.t.as_deref() {
            Some("READY") => {
                let text = |key: &str| payload.d.get(key)?.as_str().map(str::to_owned);
                let (Some(session_id), Some(url)) =
                    (text("session_id"), text("resume_gateway_url"))
                else {
                    return Err(Ended::lost("a READY without a session"));
                };
                if let Some(id) = payload.d.pointer("/user/id").and_then(Value::as_str) {
                    *lock(&self.bot_id) = Some(id.to_owned());
                }
                *resume = Some(Resume {
                    session_id,
                    seq: seq.unwrap_or(0),
                    url,
                });
                self.board.set_state(ocg_core::ChannelState::Connected);
                tracing::info!(channel = "discord", "connected to the Gateway");
            }
            Some("RESUMED") => {
                self.board.set_state(ocg_core::ChannelState::Connected);
                tracing::info!(channel = "discord", "session resumed");
            }
            Some("MESSAGE_CREATE") => {
                let cursor = resume.as_ref().map(Resume::cursor);
                return self
                    .take(&payload.d, cursor, dispatcher)
                    .await
                    .map_err(|e| {
                        // Not recorded: resuming from the last recorded
                        // sequence brings it again.
                        *resume = self.journal.cursor().and_then(|c| Resume::from_cursor(&c));
                        Ended::lost(format!("journal: {e}"))
                    });
            }
            _ => {}
        }
        Ok(None)
    }

    fn closed(&self, code: Option<u16>, reason: &str, resume: &mut Option<Resume>) -> Ended {
        match close_code(code) {
            Err(why) => Ended::Fatal(Error::InvalidInput(why)),
            Ok(resumable) => {
                if !resumable {
                    *resume = None;
                }
                let code = code.map_or_else(|| "no close code".into(), |c| format!("close {c}"));
                Ended::lost(format!(
                    "the Gateway closed the connection ({code}) {reason}"
                ))
            }
        }
    }
}

fn fatal_token(failure: &super::rest::ApiFailure) -> Ended {
    Ended::Fatal(Error::InvalidInput(format!(
        "Discord refused DISCORD_BOT_TOKEN ({failure}): copy the token from the Bot page of your application"
    )))
}

fn lost(failure: &super::rest::ApiFailure) -> Ended {
    Ended::Lost {
        why: failure.to_string(),
        wait: failure.retry_after(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_say_what_to_do() {
        assert!(
            close_code(Some(4004))
                .unwrap_err()
                .contains("DISCORD_BOT_TOKEN")
        );
        assert!(close_code(Some(4014)).unwrap_err().contains("intents"));
        assert!(close_code(Some(4013)).is_err());
        assert_eq!(close_code(Some(4009)), Ok(false));
        assert_eq!(close_code(Some(4000)), Ok(true));
        assert_eq!(close_code(Some(1006)), Ok(true));
        assert_eq!(close_code(None), Ok(true));
    }

    #[test]
    fn the_session_survives_a_restart_in_the_cursor() {
        let resume = Resume {
            session_id: "abc".into(),
            seq: 42,
            url: "wss://gateway-us-east1-b.discord.gg".into(),
        };
        assert_eq!(Resume::from_cursor(&resume.cursor()), Some(resume));
        assert_eq!(Resume::from_cursor("17"), None);
    }
}

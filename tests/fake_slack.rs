//! A fake Slack on 127.0.0.1: the Web API methods the channel calls
//! (`auth.test`, `apps.connections.open`, `chat.postMessage` with its
//! block limit and `Retry-After` rate limits, `reactions.add`/`remove`)
//! and Socket Mode over WebSocket (`hello`, `events_api` envelopes that
//! must be acknowledged and are sent again on the next connection when they
//! are not, `disconnect`). `docs/channels.md` lists what it reproduces.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The bot's user id.
pub const BOT_USER: &str = "UBOTBOT01";

/// A `chat.postMessage` the fake accepted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Debug)]
enum Control {
    Envelope(Value),
    Disconnect(&'static str),
}

#[derive(Debug, Default)]
struct Shared {
    bot_token: String,
    app_token: String,
    base: Mutex<String>,
    live: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    /// Envelopes sent and not acknowledged, by envelope id.
    unacked: Mutex<VecDeque<(String, Value)>>,
    acked: Mutex<Vec<String>>,
    next: Mutex<u64>,
    posted: Mutex<Vec<Posted>>,
    reactions: Mutex<Vec<(String, String, String)>>,
    connections: Mutex<u32>,
    limits: Mutex<HashMap<String, Vec<u64>>>,
    held: Mutex<HashMap<String, Instant>>,
    early: Mutex<u32>,
    /// The last envelope sent on any connection.
    last_envelope: Mutex<Option<Value>>,
    /// Refuse the next WebSocket upgrades (403), this many.
    refuse_upgrades: Mutex<u32>,
}

/// A running fake Slack.
#[derive(Debug, Clone)]
pub struct FakeSlack {
    /// What `SLACK_API_URL` is set to.
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeSlack {
    fn next(&self) -> u64 {
        let mut next = self.shared.next.lock().unwrap();
        *next += 1;
        *next
    }

    /// The `event_callback` payload of an event.
    pub fn callback(&self, event: Value) -> Value {
        json!({
            "token": "unused", "team_id": "T0001", "api_app_id": "A0001",
            "type": "event_callback", "event_id": format!("Ev{:08}", self.next()),
            "event_time": 1_700_000_000u64, "event": event,
        })
    }

    /// A message event from `user` in `channel` (`im` for a DM); its ts.
    pub fn message_event(
        &self,
        kind: &str,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> (String, Value) {
        let ts = format!("1700000000.{:06}", self.next());
        let mut event = json!({
            "type": kind, "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts,
        });
        if kind == "message" {
            event["channel_type"] = json!(if channel.starts_with('D') {
                "im"
            } else {
                "channel"
            });
        }
        if let Some(thread) = thread_ts {
            event["thread_ts"] = json!(thread);
        }
        (ts, event)
    }

    /// A DM from `user` through Socket Mode (queued until a connection is
    /// open); its ts.
    pub fn push_dm(&self, user: &str, text: &str) -> String {
        let (ts, event) = self.message_event("message", user, &dm_channel(user), text, None);
        self.push_event(event);
        ts
    }

    /// A mention of the bot in `channel` (in `thread_ts`); its ts.
    pub fn push_mention(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> String {
        let text = format!("<@{BOT_USER}> {text}");
        let (ts, event) = self.message_event("app_mention", user, channel, &text, thread_ts);
        self.push_event(event);
        ts
    }

    /// Send `event` in an `events_api` envelope.
    pub fn push_event(&self, event: Value) {
        let envelope_id = format!("env-{}", self.next());
        let envelope = json!({
            "envelope_id": envelope_id, "type": "events_api",
            "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "",
            "payload": self.callback(event),
        });
        self.shared
            .unacked
            .lock()
            .unwrap()
            .push_back((envelope_id, envelope.clone()));
        if let Some(live) = self.shared.live.lock().unwrap().as_ref() {
            let _ = live.send(Control::Envelope(envelope));
        }
    }

    /// Send the last envelope again, as Slack retries one (a new envelope
    /// id, `retry_attempt` 1, the same event).
    pub fn redeliver_last(&self) {
        let last = self.shared.last_envelope.lock().unwrap().clone();
        if let Some(mut envelope) = last {
            let envelope_id = format!("env-{}", self.next());
            envelope["envelope_id"] = json!(envelope_id);
            envelope["retry_attempt"] = json!(1);
            envelope["retry_reason"] = json!("timeout");
            self.shared
                .unacked
                .lock()
                .unwrap()
                .push_back((envelope_id, envelope.clone()));
            if let Some(live) = self.shared.live.lock().unwrap().as_ref() {
                let _ = live.send(Control::Envelope(envelope));
            }
        }
    }

    /// Answer the next `times` WebSocket upgrades with 403 (an expired
    /// ticket).
    pub fn refuse_upgrades(&self, times: u32) {
        *self.shared.refuse_upgrades.lock().unwrap() = times;
    }

    /// Send a `disconnect` with `reason`, then close.
    pub fn disconnect(&self, reason: &'static str) {
        if let Some(live) = self.shared.live.lock().unwrap().take() {
            let _ = live.send(Control::Disconnect(reason));
        }
    }

    /// Answer the next `times` calls of `method` with 429 and
    /// `Retry-After: seconds`.
    pub fn rate_limit(&self, method: &str, seconds: u64, times: usize) {
        self.shared
            .limits
            .lock()
            .unwrap()
            .insert(method.to_owned(), vec![seconds; times]);
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.shared.posted.lock().unwrap().clone()
    }

    /// The texts posted to `channel` (the plain fallbacks), in order.
    pub fn texts_to(&self, channel: &str) -> Vec<String> {
        self.posted()
            .into_iter()
            .filter(|p| p.channel == channel)
            .map(|p| p.text)
            .collect()
    }

    /// `(method, channel, ts)` of every reaction call.
    pub fn reactions(&self) -> Vec<(String, String, String)> {
        self.shared.reactions.lock().unwrap().clone()
    }

    pub fn connected(&self) -> bool {
        self.shared.live.lock().unwrap().is_some()
    }

    pub fn connections(&self) -> u32 {
        *self.shared.connections.lock().unwrap()
    }

    pub fn acked(&self) -> Vec<String> {
        self.shared.acked.lock().unwrap().clone()
    }

    pub fn unacked(&self) -> usize {
        self.shared.unacked.lock().unwrap().len()
    }

    pub fn early_requests(&self) -> u32 {
        *self.shared.early.lock().unwrap()
    }

    /// Wait up to `limit` until `condition` holds.
    pub fn wait(&self, limit: Duration, mut condition: impl FnMut(&Self) -> bool) -> bool {
        crate::wait_until(limit, || condition(self))
    }
}

/// The DM channel of `user`.
pub fn dm_channel(user: &str) -> String {
    format!("D{}", &user[1..])
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn fail(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = bearer(&headers).unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let now = Instant::now();
    if shared
        .held
        .lock()
        .unwrap()
        .get(&name)
        .is_some_and(|until| *until > now)
    {
        *shared.early.lock().unwrap() += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            fail("ratelimited"),
        )
            .into_response();
    }
    if let Some(seconds) = shared
        .limits
        .lock()
        .unwrap()
        .get_mut(&name)
        .and_then(Vec::pop)
    {
        shared
            .held
            .lock()
            .unwrap()
            .insert(name.clone(), now + Duration::from_secs(seconds));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            fail("ratelimited"),
        )
            .into_response();
    }
    if name == "apps.connections.open" {
        if token != shared.app_token {
            return fail("invalid_auth");
        }
        let base = shared.base.lock().unwrap().replace("http://", "ws://");
        return axum::Json(
            json!({"ok": true, "url": format!("{base}/link/?ticket=secret-ticket&app_id=A0001")}),
        )
        .into_response();
    }
    if token != shared.bot_token {
        return fail(if token.is_empty() {
            "not_authed"
        } else {
            "invalid_auth"
        });
    }
    match name.as_str() {
        "auth.test" => axum::Json(json!({
            "ok": true, "url": "https://fake.slack.com/", "team": "Fake", "user": "ocg",
            "team_id": "T0001", "user_id": BOT_USER, "bot_id": "B0001",
        }))
        .into_response(),
        "chat.postMessage" => {
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            let channel = body["channel"].as_str().unwrap_or_default().to_owned();
            if channel.is_empty() {
                return fail("channel_not_found");
            }
            if text.is_empty() && body.get("blocks").is_none() {
                return fail("no_text");
            }
            if text.chars().count() > 40_000 {
                return fail("msg_too_long");
            }
            if let Some(blocks) = body["blocks"].as_array() {
                let too_long = blocks.iter().any(|b| {
                    b["text"]["text"]
                        .as_str()
                        .is_some_and(|t| t.chars().count() > 3000)
                });
                if too_long {
                    return fail("invalid_blocks");
                }
            }
            let ts = {
                let mut next = shared.next.lock().unwrap();
                *next += 1;
                format!("1800000000.{:06}", *next)
            };
            shared.posted.lock().unwrap().push(Posted {
                channel: channel.clone(),
                thread_ts: body["thread_ts"].as_str().map(str::to_owned),
                text,
                body: body.clone(),
                at: now,
            });
            axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "message": {"ts": ts}}))
                .into_response()
        }
        "reactions.add" | "reactions.remove" => {
            shared.reactions.lock().unwrap().push((
                name.clone(),
                body["channel"].as_str().unwrap_or_default().to_owned(),
                body["timestamp"].as_str().unwrap_or_default().to_owned(),
            ));
            axum::Json(json!({"ok": true})).into_response()
        }
        _ => fail("unknown_method"),
    }
}

async fn link(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    {
        let mut refuse = shared.refuse_upgrades.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    upgrade.on_upgrade(move |socket| connection(shared, socket))
}

fn frame(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

/// One Socket Mode connection: `hello`, the envelopes not acknowledged
/// yet, then new ones; acknowledgements remove them.
async fn connection(shared: Arc<Shared>, mut socket: WebSocket) {
    *shared.connections.lock().unwrap() += 1;
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake", "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0001"}});
    if socket.send(frame(&hello)).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    // What was not acknowledged on an earlier connection comes again.
    let pending: Vec<Value> = shared
        .unacked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    for envelope in pending {
        *shared.last_envelope.lock().unwrap() = Some(envelope.clone());
        if socket.send(frame(&envelope)).await.is_err() {
            return;
        }
    }
    *shared.live.lock().unwrap() = Some(tx);
    loop {
        tokio::select! {
            control = rx.recv() => match control {
                Some(Control::Envelope(envelope)) => {
                    *shared.last_envelope.lock().unwrap() = Some(envelope.clone());
                    if socket.send(frame(&envelope)).await.is_err() {
                        return;
                    }
                }
                Some(Control::Disconnect(reason)) => {
                    let _ = socket.send(frame(&json!({"type": "disconnect", "reason": reason,
                        "debug_info": {"host": "fake"}}))).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                None => return,
            },
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else {
                    shared.live.lock().unwrap().take();
                    return;
                };
                if let Message::Text(text) = message
                    && let Ok(ack) = serde_json::from_str::<Value>(text.as_str())
                    && let Some(id) = ack["envelope_id"].as_str()
                {
                    shared.acked.lock().unwrap().push(id.to_owned());
                    shared.unacked.lock().unwrap().retain(|(e, _)| e != id);
                }
            }
        }
    }
}

/// Start a fake Slack accepting `bot_token` and `app_token`.
pub fn start(bot_token: &str, app_token: &str) -> FakeSlack {
    let shared = Arc::new(Shared {
        bot_token: bot_token.to_owned(),
        app_token: app_token.to_owned(),
        ..Default::default()
    });
    let app = Router::new()
        .route("/api/{method}", post(method))
        .route("/link/", get(link))
        .with_state(shared.clone());
    let addr = crate::serve_on_own_thread(app);
    *shared.base.lock().unwrap() = format!("http://{addr}");
    FakeSlack {
        url: format!("http://{addr}/api"),
        shared,
    }
}

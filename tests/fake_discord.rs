//! A fake Discord on 127.0.0.1: the REST API v10 calls the channel makes
//! (`GET /users/@me`, `GET /gateway/bot`, `GET /channels/{id}`,
//! `POST /channels/{id}/messages` with the 2,000-character limit and
//! per-route rate limits, `POST /channels/{id}/typing`) and the Gateway
//! over WebSocket (Hello, Identify, Resume with replay of the events after
//! the given sequence, heartbeats and their acks, op 7, op 9, closes).
//! `docs/channels.md` lists what it reproduces and what it does not.

use std::collections::HashMap;
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
pub const BOT_ID: &str = "900000000000000001";
/// The Gateway's heartbeat interval, in milliseconds.
pub const HEARTBEAT_MS: u64 = 1_000;

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub channel: String,
    pub content: String,
    pub body: Value,
    pub at: Instant,
}

/// What the test asks the open Gateway connection to do.
#[derive(Debug)]
enum Control {
    Dispatch(u64, &'static str, Value),
    Reconnect,
    Invalidate(bool),
    Drop,
}

#[derive(Debug, Default)]
struct Session {
    id: String,
    /// Every event of the session: (seq, type, data).
    events: Vec<(u64, &'static str, Value)>,
}

#[derive(Debug, Default)]
struct Shared {
    token: String,
    base: Mutex<String>,
    session: Mutex<Option<Session>>,
    live: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    next_id: Mutex<u64>,
    sent: Mutex<Vec<Sent>>,
    typing: Mutex<Vec<String>>,
    identifies: Mutex<u32>,
    resumes: Mutex<Vec<u64>>,
    heartbeats: Mutex<u32>,
    /// Heartbeats go unacknowledged (a dead connection) until the next one.
    deaf: Mutex<bool>,
    /// 429s still to give, per route, with their `retry_after` (seconds).
    limits: Mutex<HashMap<String, Vec<f64>>>,
    /// Until when each route is limited, after a 429.
    held: Mutex<HashMap<String, Instant>>,
    /// Requests that came while their route was limited.
    early: Mutex<u32>,
    /// Thread id → parent channel id.
    threads: Mutex<HashMap<String, String>>,
    /// Message ids by nonce, for `enforce_nonce`.
    nonces: Mutex<HashMap<String, String>>,
}

/// A running fake Discord.
#[derive(Debug, Clone)]
pub struct FakeDiscord {
    /// What `DISCORD_API_URL` is set to.
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeDiscord {
    fn snowflake(&self) -> String {
        let mut next = self.shared.next_id.lock().unwrap();
        *next += 1;
        (1_100_000_000_000_000_000 + *next).to_string()
    }

    /// A message from `user` in `channel` (`guild`: `None` for a DM);
    /// `mention`: whether it mentions the bot. Dispatched now when a
    /// session is connected, else kept for the session's resume, as
    /// Discord does. Its message id.
    pub fn push_message(
        &self,
        user: &str,
        channel: &str,
        guild: Option<&str>,
        text: &str,
        mention: bool,
    ) -> String {
        let id = self.snowflake();
        let mut data = json!({
            "id": id, "channel_id": channel, "type": 0,
            "author": {"id": user, "username": format!("user{user}"), "global_name": null},
            "content": if mention { format!("<@{BOT_ID}> {text}") } else { text.to_owned() },
            "mentions": if mention { json!([{"id": BOT_ID, "username": "ocg", "bot": true}]) } else { json!([]) },
            "attachments": [],
        });
        if let Some(guild) = guild {
            data["guild_id"] = json!(guild);
        }
        self.dispatch("MESSAGE_CREATE", data);
        id
    }

    /// A DM from `user` (the DM channel is `d<user>`'s digits: `5<user>`).
    pub fn push_dm(&self, user: &str, text: &str) -> String {
        self.push_message(user, &dm_channel(user), None, text, false)
    }

    /// Send the last `MESSAGE_CREATE` again, with a new sequence number
    /// (what a replay after a resume can do).
    pub fn redeliver_last_message(&self) {
        let last = {
            let session = self.shared.session.lock().unwrap();
            session.as_ref().and_then(|s| {
                s.events
                    .iter()
                    .rev()
                    .find(|e| e.1 == "MESSAGE_CREATE")
                    .cloned()
            })
        };
        if let Some((_, t, d)) = last {
            self.dispatch(t, d);
        }
    }

    fn dispatch(&self, t: &'static str, d: Value) {
        let mut session = self.shared.session.lock().unwrap();
        let session = session.get_or_insert_with(Session::default);
        let seq = session.events.last().map_or(1, |e| e.0) + 1;
        session.events.push((seq, t, d.clone()));
        if let Some(live) = self.shared.live.lock().unwrap().as_ref() {
            let _ = live.send(Control::Dispatch(seq, t, d));
        }
    }

    /// Cut the connection without a close frame (a network failure).
    pub fn drop_connection(&self) {
        self.control(Control::Drop);
    }

    /// Send op 7 (reconnect and resume).
    pub fn request_reconnect(&self) {
        self.control(Control::Reconnect);
    }

    /// Send op 9 (invalid session), resumable or not.
    pub fn invalidate_session(&self, resumable: bool) {
        self.control(Control::Invalidate(resumable));
    }

    fn control(&self, control: Control) {
        if let Some(live) = self.shared.live.lock().unwrap().take() {
            let _ = live.send(control);
        }
    }

    /// Stop acknowledging heartbeats on the open connection, as a
    /// connection that died without a close does.
    pub fn stop_acking(&self) {
        *self.shared.deaf.lock().unwrap() = true;
    }

    /// Whether a Gateway connection is open and identified or resumed.
    pub fn connected(&self) -> bool {
        self.shared.live.lock().unwrap().is_some()
    }

    /// Answer the next `times` sends to `channel` with 429, `retry_after`
    /// seconds.
    pub fn rate_limit(&self, channel: &str, retry_after: f64, times: usize) {
        self.shared.limits.lock().unwrap().insert(
            format!("POST /channels/{channel}/messages"),
            vec![retry_after; times],
        );
    }

    /// `thread` is a thread of `parent`.
    pub fn add_thread(&self, thread: &str, parent: &str) {
        self.shared
            .threads
            .lock()
            .unwrap()
            .insert(thread.into(), parent.into());
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// The texts sent to `channel`, in order.
    pub fn texts_to(&self, channel: &str) -> Vec<String> {
        self.sent()
            .into_iter()
            .filter(|s| s.channel == channel)
            .map(|s| s.content)
            .collect()
    }

    pub fn typing(&self) -> Vec<String> {
        self.shared.typing.lock().unwrap().clone()
    }

    pub fn identifies(&self) -> u32 {
        *self.shared.identifies.lock().unwrap()
    }

    /// The sequence numbers resumes asked from.
    pub fn resumes(&self) -> Vec<u64> {
        self.shared.resumes.lock().unwrap().clone()
    }

    pub fn heartbeats(&self) -> u32 {
        *self.shared.heartbeats.lock().unwrap()
    }

    /// Requests sent while their route was still rate limited.
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
    format!("5{user}")
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bot {}", shared.token))
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    axum::Json(json!({"id": BOT_ID, "username": "ocg", "bot": true})).into_response()
}

async fn gateway_bot(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let base = shared.base.lock().unwrap().replace("http://", "ws://");
    axum::Json(json!({
        "url": format!("{base}/gateway"),
        "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
    }))
    .into_response()
}

async fn channel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.threads.lock().unwrap().get(&id) {
        Some(parent) => {
            axum::Json(json!({"id": id, "type": 11, "parent_id": parent})).into_response()
        }
        None => axum::Json(json!({"id": id, "type": 0})).into_response(),
    }
}

async fn typing(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    shared.typing.lock().unwrap().push(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&shared, &headers) {
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let route = format!("POST /channels/{id}/messages");
    let now = Instant::now();
    if shared
        .held
        .lock()
        .unwrap()
        .get(&route)
        .is_some_and(|until| *until > now)
    {
        *shared.early.lock().unwrap() += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-ratelimit-scope", "user")],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.5, "global": false})),
        )
            .into_response();
    }
    let limited = shared
        .limits
        .lock()
        .unwrap()
        .get_mut(&route)
        .and_then(Vec::pop);
    if let Some(retry_after) = limited {
        shared
            .held
            .lock()
            .unwrap()
            .insert(route, now + Duration::from_secs_f64(retry_after));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-ratelimit-limit", "5".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset-after", format!("{retry_after}")),
                ("x-ratelimit-scope", "user".to_owned()),
            ],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false})),
        )
            .into_response();
    }
    // With `enforce_nonce`, a nonce seen before returns that message again.
    let nonce = body["nonce"].as_str().map(str::to_owned);
    if body["enforce_nonce"] == true
        && let Some(id) = nonce
            .as_ref()
            .and_then(|n| shared.nonces.lock().unwrap().get(n).cloned())
    {
        return axum::Json(json!({"id": id, "channel_id": id})).into_response();
    }
    let content = body["content"].as_str().unwrap_or_default().to_owned();
    if content.is_empty() || content.chars().count() > 2000 {
        return error(
            StatusCode::BAD_REQUEST,
            50035,
            "Invalid Form Body: content: Must be 2000 or fewer in length.",
        );
    }
    let message_id = {
        let mut next = shared.next_id.lock().unwrap();
        *next += 1;
        (1_200_000_000_000_000_000 + *next).to_string()
    };
    if let Some(nonce) = nonce {
        shared
            .nonces
            .lock()
            .unwrap()
            .insert(nonce, message_id.clone());
    }
    shared.sent.lock().unwrap().push(Sent {
        channel: id.clone(),
        content: content.clone(),
        body,
        at: now,
    });
    (
        [
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "4"),
            ("x-ratelimit-reset-after", "1.0"),
        ],
        axum::Json(json!({"id": message_id, "channel_id": id, "content": content})),
    )
        .into_response()
}

async fn gateway(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| connection(shared, socket))
}

fn frame(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// One Gateway connection: Hello, then Identify or Resume, then events
/// and heartbeats until the test or the client ends it.
async fn connection(shared: Arc<Shared>, mut socket: WebSocket) {
    if socket
        .send(frame(
            json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}, "s": null, "t": null}),
        ))
        .await
        .is_err()
    {
        return;
    }
    *shared.deaf.lock().unwrap() = false;
    let (tx, mut rx) = mpsc::unbounded_channel();
    loop {
        tokio::select! {
            control = rx.recv() => {
                let Some(control) = control else { return };
                let out = match control {
                    Control::Dispatch(seq, t, d) => frame(json!({"op": 0, "s": seq, "t": t, "d": d})),
                    Control::Reconnect => frame(json!({"op": 7, "d": null})),
                    Control::Invalidate(resumable) => frame(json!({"op": 9, "d": resumable})),
                    // Dropped without a close frame.
                    Control::Drop => return,
                };
                if socket.send(out).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else {
                    shared.live.lock().unwrap().take();
                    return;
                };
                let Ok(payload) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match payload["op"].as_u64() {
                    Some(1) => {
                        *shared.heartbeats.lock().unwrap() += 1;
                        if *shared.deaf.lock().unwrap() {
                            continue;
                        }
                        if socket.send(frame(json!({"op": 11}))).await.is_err() {
                            return;
                        }
                    }
                    Some(2) => {
                        if payload["d"]["token"] != shared.token.as_str() {
                            let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                                code: 4004,
                                reason: "Authentication failed.".into(),
                            }))).await;
                            return;
                        }
                        *shared.identifies.lock().unwrap() += 1;
                        let session_id = format!("session{}", *shared.identifies.lock().unwrap());
                        let base = shared.base.lock().unwrap().replace("http://", "ws://");
                        let seq = {
                            let mut session = shared.session.lock().unwrap();
                            let seq = session.as_ref().and_then(|s| s.events.last()).map_or(1, |e| e.0) + 1;
                            // A new session: what the old one held is gone.
                            *session = Some(Session { id: session_id.clone(), events: vec![(seq, "READY", Value::Null)] });
                            seq
                        };
                        let ready = json!({"op": 0, "s": seq, "t": "READY", "d": {
                            "v": 10, "user": {"id": BOT_ID, "username": "ocg", "bot": true},
                            "session_id": session_id, "resume_gateway_url": format!("{base}/gateway"),
                            "guilds": [],
                        }});
                        if socket.send(frame(ready)).await.is_err() {
                            return;
                        }
                        *shared.live.lock().unwrap() = Some(tx.clone());
                    }
                    Some(6) => {
                        let from = payload["d"]["seq"].as_u64().unwrap_or(0);
                        let wanted = payload["d"]["session_id"].as_str().unwrap_or_default().to_owned();
                        shared.resumes.lock().unwrap().push(from);
                        let missed = {
                            let session = shared.session.lock().unwrap();
                            match session.as_ref() {
                                Some(s) if s.id == wanted && payload["d"]["token"] == shared.token.as_str() => Some(
                                    s.events.iter().filter(|e| e.0 > from && e.1 != "READY").cloned().collect::<Vec<_>>(),
                                ),
                                _ => None,
                            }
                        };
                        let Some(missed) = missed else {
                            let _ = socket.send(frame(json!({"op": 9, "d": false}))).await;
                            continue;
                        };
                        for (seq, t, d) in missed {
                            if socket.send(frame(json!({"op": 0, "s": seq, "t": t, "d": d}))).await.is_err() {
                                return;
                            }
                        }
                        let resumed_seq = {
                            let mut session = shared.session.lock().unwrap();
                            let session = session.as_mut().unwrap();
                            let seq = session.events.last().map_or(1, |e| e.0) + 1;
                            session.events.push((seq, "RESUMED", Value::Null));
                            seq
                        };
                        if socket.send(frame(json!({"op": 0, "s": resumed_seq, "t": "RESUMED", "d": {}}))).await.is_err() {
                            return;
                        }
                        *shared.live.lock().unwrap() = Some(tx.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Start a fake Discord accepting the bot token `token`.
pub fn start(token: &str) -> FakeDiscord {
    let shared = Arc::new(Shared {
        token: token.to_owned(),
        ..Default::default()
    });
    let app = Router::new()
        .route("/api/v10/users/@me", get(me))
        .route("/api/v10/gateway/bot", get(gateway_bot))
        .route("/api/v10/channels/{id}", get(channel))
        .route("/api/v10/channels/{id}/messages", post(create_message))
        .route("/api/v10/channels/{id}/typing", post(typing))
        .route("/gateway", get(gateway))
        .route("/gateway/", get(gateway))
        .with_state(shared.clone());
    let addr = crate::serve_on_own_thread(app);
    *shared.base.lock().unwrap() = format!("http://{addr}");
    FakeDiscord {
        url: format!("http://{addr}/api"),
        shared,
    }
}

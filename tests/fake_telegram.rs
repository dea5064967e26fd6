//! A fake Telegram Bot API on 127.0.0.1: `getUpdates` with long polling,
//! `sendMessage` (rejecting HTML on demand, enforcing the 4096 limit),
//! `sendChatAction`, `setWebhook`, `deleteWebhook`, and scripted faults
//! (429 with `retry_after`, 5xx, slow answers) per method.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// What the fake does to the next call of a method.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer `status` with this description (and `retry_after` for 429).
    Status(u16, Option<u64>),
    /// Wait this long, then answer normally.
    Slow(Duration),
}

/// A `sendMessage` the fake accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: String,
    pub text: String,
    pub parse_mode: Option<String>,
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    token: String,
    next_id: Mutex<i64>,
    /// Updates not yet confirmed by an offset.
    queue: Mutex<VecDeque<Value>>,
    arrived: Notify,
    sent: Mutex<Vec<Sent>>,
    /// Every call: method and its JSON body.
    calls: Mutex<Vec<(String, Value)>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Reject HTML messages this many more times.
    reject_html: Mutex<u32>,
    /// When each update was handed out (first time), by update_id.
    delivered: Mutex<HashMap<i64, Instant>>,
}

/// A running fake Bot API.
#[derive(Debug, Clone)]
pub struct FakeTelegram {
    /// What `TELEGRAM_API_URL` is set to.
    pub url: String,
    /// The bot token it accepts.
    pub token: String,
    shared: Arc<Shared>,
}

impl FakeTelegram {
    /// Queue a text message from `chat` (the user id is the chat id); returns
    /// its update_id.
    pub fn push_text(&self, chat: i64, text: &str) -> i64 {
        self.push_message(chat, json!({ "text": text }))
    }

    /// Queue a message from `chat` with these fields (`text`, `photo`, …).
    pub fn push_message(&self, chat: i64, fields: Value) -> i64 {
        let id = self.next_update_id();
        let mut message = json!({
            "message_id": id * 10,
            "date": 0,
            "chat": {"id": chat, "type": if chat < 0 { "group" } else { "private" }},
            "from": {"id": chat.abs(), "is_bot": false, "first_name": "Tester"},
        });
        if let (Some(message), Some(fields)) = (message.as_object_mut(), fields.as_object()) {
            message.extend(fields.clone());
        }
        let update = json!({"update_id": id, "message": message});
        self.shared.queue.lock().unwrap().push_back(update);
        self.shared.arrived.notify_waiters();
        id
    }

    /// A complete update (for webhook tests), not queued.
    pub fn make_update(&self, chat: i64, text: &str) -> Value {
        let id = self.next_update_id();
        json!({"update_id": id, "message": {
            "message_id": id * 10, "date": 0,
            "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": false, "first_name": "Tester"},
            "text": text,
        }})
    }

    fn next_update_id(&self) -> i64 {
        let mut next = self.shared.next_id.lock().unwrap();
        *next += 1;
        1000 + *next
    }

    /// Make the next call of `method` fail or wait.
    pub fn fault(&self, method: &str, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .push_back(fault);
    }

    /// Reject the next `times` HTML messages with Telegram's parse error.
    pub fn reject_html(&self, times: u32) {
        *self.shared.reject_html.lock().unwrap() = times;
    }

    /// Messages sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// Messages sent to `chat`, texts only.
    pub fn texts_to(&self, chat: i64) -> Vec<String> {
        let chat = chat.to_string();
        self.sent()
            .into_iter()
            .filter(|s| s.chat_id == chat)
            .map(|s| s.text)
            .collect()
    }

    /// Calls of `method` so far, with their bodies.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.shared
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// When update `id` was first handed out by `getUpdates`.
    pub fn delivered_at(&self, id: i64) -> Option<Instant> {
        self.shared.delivered.lock().unwrap().get(&id).copied()
    }

    /// Wait until `condition` holds (polling), up to `limit`.
    pub fn wait(&self, limit: Duration, mut condition: impl FnMut(&Self) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if condition(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        condition(self)
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn refused(status: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({ "retry_after": seconds });
    }
    answer(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
    )
}

fn ok(result: Value) -> Response {
    answer(StatusCode::OK, json!({"ok": true, "result": result}))
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if bot != format!("bot{}", shared.token) {
        return refused(401, "Unauthorized", None);
    }
    shared
        .calls
        .lock()
        .unwrap()
        .push((method.clone(), body.clone()));
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .get_mut(&method)
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Status(429, retry_after)) => {
            return refused(
                429,
                &format!(
                    "Too Many Requests: retry after {}",
                    retry_after.unwrap_or(1)
                ),
                retry_after,
            );
        }
        Some(Fault::Status(status, _)) => {
            return refused(status, "Internal Server Error", None);
        }
        Some(Fault::Slow(wait)) => tokio::time::sleep(wait).await,
        None => {}
    }
    match method.as_str() {
        "getUpdates" => get_updates(&shared, &body).await,
        "sendMessage" => send_message(&shared, &body),
        "sendChatAction" | "setWebhook" | "deleteWebhook" | "editMessageText" => ok(json!(true)),
        _ => refused(404, "Not Found: method not found", None),
    }
}

async fn get_updates(shared: &Shared, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(50));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let arrived = shared.arrived.notified();
        tokio::pin!(arrived);
        // Registered before the queue is looked at: a push in between wakes it.
        arrived.as_mut().enable();
        {
            let mut queue = shared.queue.lock().unwrap();
            // An offset confirms (and forgets) every update before it.
            queue.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let batch: Vec<Value> = queue
                .iter()
                .take(body["limit"].as_u64().unwrap_or(100) as usize)
                .cloned()
                .collect();
            if !batch.is_empty() {
                let mut delivered = shared.delivered.lock().unwrap();
                for u in &batch {
                    delivered
                        .entry(u["update_id"].as_i64().unwrap_or(0))
                        .or_insert_with(Instant::now);
                }
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send_message(shared: &Shared, body: &Value) -> Response {
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let parse_mode = body["parse_mode"].as_str().map(str::to_owned);
    if text.is_empty() {
        return refused(400, "Bad Request: message text is empty", None);
    }
    let visible = if parse_mode.is_some() {
        strip_tags(&text)
    } else {
        text.clone()
    };
    if visible.encode_utf16().count() > 4096 {
        return refused(400, "Bad Request: message is too long", None);
    }
    if parse_mode.as_deref() == Some("HTML") {
        let mut reject = shared.reject_html.lock().unwrap();
        if *reject > 0 {
            *reject -= 1;
            return refused(
                400,
                "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
                None,
            );
        }
    }
    let mut sent = shared.sent.lock().unwrap();
    sent.push(Sent {
        chat_id: match &body["chat_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        text,
        parse_mode,
        at: Instant::now(),
    });
    let id = sent.len();
    ok(json!({"message_id": id, "date": 0, "chat": {"id": body["chat_id"]}}))
}

/// HTML text as Telegram counts it: tags removed, entities decoded.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Start a fake Bot API accepting `token`, on its own runtime thread.
pub fn start(token: &str) -> FakeTelegram {
    let shared = Arc::new(Shared {
        token: token.to_owned(),
        ..Default::default()
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/{bot}/{method}", post(method))
        .with_state(shared.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    FakeTelegram {
        url: format!("http://{addr}"),
        token: token.to_owned(),
        shared,
    }
}

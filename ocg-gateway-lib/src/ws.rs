//! WebSocket chat on `/v1/chat/stream` (frames documented in docs/gateway.md).
//!
//! The connection logic is written over generic `Sink`/`Stream` halves so the
//! tests drive it with channels. Each request runs as its own task tagged by
//! the client's id; all of them write into one bounded queue per
//! connection, so a client that stops reading stalls only its own turns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use ocg_core::{Agent, ChatEvent, ChatRequest, Message as ChatMessage};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::auth::{Auth, CredentialKind, Denied};

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Ping interval.
    pub ping_every: Duration,
    /// Close after this long without any frame from the client.
    pub idle_timeout: Duration,
    /// Time allowed for the `auth` frame.
    pub auth_timeout: Duration,
    /// Requests running at once on one connection.
    pub max_in_flight: usize,
    /// Frames queued for a slow client before its turns wait.
    pub queue: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            max_in_flight: 16,
            queue: 64,
        }
    }
}

/// Maximum size of one incoming frame.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Chat {
        id: String,
        #[serde(default)]
        session: Option<String>,
        text: String,
    },
    Cancel {
        id: String,
    },
    Ping,
    Auth {
        token: String,
    },
}

/// The frame for `event` of request `id`: the event's JSON with `id` added
/// (a tool call's own id is renamed `tool_id`).
pub fn event_frame(id: &str, event: &ChatEvent) -> String {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        if let Some(tool_id) = object.remove("id") {
            object.insert("tool_id".into(), tool_id);
        }
        object.insert("id".into(), serde_json::Value::String(id.to_owned()));
    }
    value.to_string()
}

fn error_frame(id: Option<&str>, code: &str, message: &str) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::json!({"type": "error", "id": id, "code": code, "message": message})
            .to_string(),
    ))
}

/// Serve one connection until it closes, idles out or fails to authenticate.
pub async fn serve_connection<S, R>(
    sink: S,
    mut stream: R,
    agent: Arc<dyn Agent>,
    auth: Arc<Auth>,
    client: IpAddr,
    mut authenticated: bool,
    limits: WsLimits,
) where
    S: Sink<Message> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, axum::Error>> + Send + Unpin,
{
    let (tx, rx) = mpsc::channel::<Message>(limits.queue);
    let writer = tokio::spawn(write_frames(sink, rx, limits.ping_every));
    let running: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();

    loop {
        let wait = if authenticated {
            limits.idle_timeout
        } else {
            limits.auth_timeout
        };
        let frame = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {
                let why = if authenticated {
                    "idle for too long"
                } else {
                    "no auth frame in time"
                };
                let _ = tx.send(error_frame(None, "timeout", why)).await;
                break;
            }
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                let _ = tx
                    .send(error_frame(None, "invalid_frame", "frames are JSON text"))
                    .await;
                continue;
            }
        };
        let parsed: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(frame) => frame,
            Err(error) => {
                let _ = tx
                    .send(error_frame(None, "invalid_frame", &error.to_string()))
                    .await;
                continue;
            }
        };
        match parsed {
            ClientFrame::Auth { token } => {
                if auth.token_matches(&token) {
                    authenticated = true;
                } else {
                    let frame = match auth.refuse(CredentialKind::Ui, client) {
                        Denied::RateLimited => {
                            error_frame(None, "rate_limited", "too many failed attempts")
                        }
                        Denied::Unauthorized => error_frame(None, "unauthorized", "wrong token"),
                    };
                    let _ = tx.send(frame).await;
                    break;
                }
            }
            _ if !authenticated => {
                let _ = tx
                    .send(error_frame(
                        None,
                        "unauthorized",
                        "send an auth frame first",
                    ))
                    .await;
                break;
            }
            ClientFrame::Ping => {
                let _ = tx
                    .send(Message::Text(Utf8Bytes::from_static(r#"{"type":"pong"}"#)))
                    .await;
            }
            ClientFrame::Cancel { id } => {
                let handle = {
                    let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                    map.remove(&id)
                };
                if let Some(handle) = handle {
                    handle.abort();
                    let _ = tx
                        .send(error_frame(
                            Some(&id),
                            "cancelled",
                            "cancelled by the client",
                        ))
                        .await;
                }
            }
            ClientFrame::Chat { id, session, text } => {
                let refusal = {
                    let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                    map.retain(|_, handle| !handle.is_finished());
                    let refusal = if map.contains_key(&id) {
                        Some("a request with this id is running")
                    } else if map.len() >= limits.max_in_flight {
                        Some("too many requests in flight on this connection")
                    } else if id.is_empty() || id.len() > 100 {
                        Some("the id must be 1 to 100 characters")
                    } else {
                        None
                    };
                    if refusal.is_none() {
                        let request = ChatRequest {
                            session_key: session,
                            messages: vec![ChatMessage::user(text)],
                            ..Default::default()
                        };
                        let task = tokio::spawn(run_request(
                            agent.clone(),
                            request,
                            id.clone(),
                            tx.clone(),
                        ));
                        map.insert(id.clone(), task.abort_handle());
                    }
                    refusal
                };
                if let Some(why) = refusal {
                    let _ = tx
                        .send(error_frame(Some(&id), "invalid_request", why))
                        .await;
                }
            }
        }
    }

    let handles: Vec<AbortHandle> = {
        let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
        map.drain().map(|(_, handle)| handle).collect()
    };
    for handle in handles {
        handle.abort();
    }
    drop(tx);
    let _ = writer.await;
}

async fn run_request(
    agent: Arc<dyn Agent>,
    request: ChatRequest,
    id: String,
    tx: mpsc::Sender<Message>,
) {
    let mut events = match agent.chat_stream(request).await {
        Ok(events) => events,
        Err(error) => {
            let _ = tx
                .send(error_frame(Some(&id), error.code(), &error.to_string()))
                .await;
            return;
        }
    };
    while let Some(event) = events.next().await {
        let terminal = event.is_terminal();
        if tx
            .send(Message::Text(Utf8Bytes::from(event_frame(&id, &event))))
            .await
            .is_err()
        {
            return;
        }
        if terminal {
            return;
        }
    }
    let _ = tx
        .send(error_frame(
            Some(&id),
            "unavailable",
            "the agent closed the stream",
        ))
        .await;
}

async fn write_frames<S>(mut sink: S, mut rx: mpsc::Receiver<Message>, ping_every: Duration)
where
    S: Sink<Message> + Unpin,
{
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        let message = tokio::select! {
            message = rx.recv() => match message {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc as fmpsc;
    use ocg_core::testing::ScriptedAgent;

    struct Client {
        to_server: fmpsc::UnboundedSender<Result<Message, axum::Error>>,
        from_server: fmpsc::UnboundedReceiver<Message>,
        done: tokio::task::JoinHandle<()>,
    }

    fn connect(agent: Arc<dyn Agent>, authenticated: bool, limits: WsLimits) -> Client {
        let (to_server, server_in) = fmpsc::unbounded();
        let (server_out, from_server) = fmpsc::unbounded();
        let auth = Arc::new(Auth::new("tok".into(), vec![]));
        let done = tokio::spawn(serve_connection(
            server_out,
            server_in,
            agent,
            auth,
            "127.0.0.1".parse().unwrap(),
            authenticated,
            limits,
        ));
        Client {
            to_server,
            from_server,
            done,
        }
    }

    impl Client {
        fn send(&self, json: &str) {
            self.to_server
                .unbounded_send(Ok(Message::Text(Utf8Bytes::from(json.to_owned()))))
                .unwrap();
        }
        async fn next_json(&mut self) -> serde_json::Value {
            loop {
                match self.from_server.next().await.unwrap() {
                    Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                    Message::Ping(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn chat_events_are_tagged_with_the_request_id() {
        let mut client = connect(Arc::new(ScriptedAgent::new()), true, WsLimits::default());
        client.send(r#"{"type":"chat","id":"a","session":"web:1","text":"one"}"#);
        let delta = client.next_json().await;
        assert_eq!(delta["type"], "delta");
        assert_eq!(delta["id"], "a");
        assert_eq!(delta["text"], "echo: one");
        let done = client.next_json().await;
        assert_eq!(
            (done["type"].as_str(), done["id"].as_str()),
            (Some("done"), Some("a"))
        );
        assert_eq!(done["session_key"], "web:1");
        client.send(r#"{"type":"ping"}"#);
        assert_eq!(client.next_json().await["type"], "pong");
        client.send("not json");
        assert_eq!(client.next_json().await["code"], "invalid_frame");
        client.send(r#"{"type":"chat","id":"b","text":"x","extra":1}"#);
        assert_eq!(client.next_json().await["code"], "invalid_frame");
    }

    #[tokio::test]
    async fn an_unauthenticated_connection_needs_an_auth_frame() {
        let mut client = connect(Arc::new(ScriptedAgent::new()), false, WsLimits::default());
        client.send(r#"{"type":"chat","id":"a","text":"hi"}"#);
        assert_eq!(client.next_json().await["code"], "unauthorized");
        client.done.await.unwrap();

        let mut client = connect(Arc::new(ScriptedAgent::new()), false, WsLimits::default());
        client.send(r#"{"type":"auth","token":"tok"}"#);
        client.send(r#"{"type":"chat","id":"a","text":"hi"}"#);
        assert_eq!(client.next_json().await["text"], "echo: hi");

        let mut client = connect(Arc::new(ScriptedAgent::new()), false, WsLimits::default());
        client.send(r#"{"type":"auth","token":"wrong"}"#);
        assert_eq!(client.next_json().await["code"], "unauthorized");
        client.done.await.unwrap();
    }

    #[tokio::test]
    async fn idle_connections_are_closed() {
        let limits = WsLimits {
            idle_timeout: Duration::from_millis(50),
            ..WsLimits::default()
        };
        let mut client = connect(Arc::new(ScriptedAgent::new()), true, limits);
        assert_eq!(client.next_json().await["code"], "timeout");
        tokio::time::timeout(Duration::from_secs(2), client.done)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn tool_ids_do_not_clash_with_request_ids() {
        let frame = event_frame(
            "r1",
            &ChatEvent::ToolStart {
                id: "call_9".into(),
                name: "read".into(),
                arguments: serde_json::json!({}),
            },
        );
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["id"], "r1");
        assert_eq!(value["tool_id"], "call_9");
    }
}

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

fn error_frame(id: Option<&str>, code: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "id": id, "code": code, "message": message}).to_string()
}

/// Serve one connection until it closes, idles out or fails to authenticate.
///
/// One task per connection reads the client's frames, writes the frames
/// queued by its requests' tasks, and pings; an idle connection holds no
/// queue (it is made at the first request), so 10,000 idle WebSockets cost
/// little more than their sockets.
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
    let mut out = Outbox {
        sink,
        queue: None,
        capacity: limits.queue,
    };
    let running: Arc<Mutex<HashMap<String, AbortHandle>>> = Arc::default();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.ping_every,
        limits.ping_every,
    );
    let wait = |authenticated: bool| {
        if authenticated {
            limits.idle_timeout
        } else {
            limits.auth_timeout
        }
    };
    let idle = tokio::time::sleep(wait(authenticated));
    tokio::pin!(idle);

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            Some(text) = out.queued() => {
                if out.write_text(text).await.is_err() {
                    break;
                }
                continue;
            }
            _ = ping.tick() => {
                if out.write(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
            () = &mut idle => {
                let why = if authenticated {
                    "idle for too long"
                } else {
                    "no auth frame in time"
                };
                out.send_now(error_frame(None, "timeout", why)).await;
                break;
            }
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(_)) | None => break,
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + wait(authenticated));
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                out.send_now(error_frame(None, "invalid_frame", "frames are JSON text"))
                    .await;
                continue;
            }
        };
        let parsed: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(frame) => frame,
            Err(error) => {
                out.send_now(error_frame(None, "invalid_frame", &error.to_string()))
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
                    out.send_now(frame).await;
                    break;
                }
            }
            _ if !authenticated => {
                out.send_now(error_frame(
                    None,
                    "unauthorized",
                    "send an auth frame first",
                ))
                .await;
                break;
            }
            ClientFrame::Ping => {
                out.send_now(r#"{"type":"pong"}"#.to_owned()).await;
            }
            ClientFrame::Cancel { id } => {
                let handle = {
                    let mut map = running.lock().unwrap_or_else(|p| p.into_inner());
                    map.remove(&id)
                };
                if let Some(handle) = handle {
                    handle.abort();
                    out.send_now(error_frame(
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
                            out.sender(),
                        ));
                        map.insert(id.clone(), task.abort_handle());
                    }
                    refusal
                };
                if let Some(why) = refusal {
                    out.send_now(error_frame(Some(&id), "invalid_request", why))
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
    out.close().await;
}

/// The writing side of a connection: the socket, and the queue the
/// requests' tasks write their frames into (made at the first request).
struct Outbox<S> {
    sink: S,
    queue: Option<(mpsc::Sender<String>, mpsc::Receiver<String>)>,
    capacity: usize,
}

impl<S: Sink<Message> + Unpin> Outbox<S> {
    /// A sender for a request's task.
    fn sender(&mut self) -> mpsc::Sender<String> {
        let capacity = self.capacity.max(1);
        let (tx, _) = self.queue.get_or_insert_with(|| mpsc::channel(capacity));
        tx.clone()
    }

    /// The next frame a request queued; never ready without a queue.
    async fn queued(&mut self) -> Option<String> {
        match &mut self.queue {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    async fn write(&mut self, message: Message) -> Result<(), S::Error> {
        self.sink.send(message).await
    }

    async fn write_text(&mut self, text: String) -> Result<(), S::Error> {
        send_text(&mut self.sink, text).await
    }

    /// Send a frame of the connection itself (a refusal, a pong), after
    /// the frames already queued, so the client sees them in order.
    async fn send_now(&mut self, text: String) {
        if let Some((_, rx)) = &mut self.queue {
            while let Ok(queued) = rx.try_recv() {
                if send_text(&mut self.sink, queued).await.is_err() {
                    return;
                }
            }
        }
        let _ = self.write_text(text).await;
    }

    /// Write what the (aborted) requests still queue, then close.
    async fn close(mut self) {
        if let Some((tx, mut rx)) = self.queue.take() {
            drop(tx);
            while let Some(text) = rx.recv().await {
                if self.write_text(text).await.is_err() {
                    return;
                }
            }
        }
        let _ = self.write(Message::Close(None)).await;
    }
}

async fn run_request(
    agent: Arc<dyn Agent>,
    request: ChatRequest,
    id: String,
    tx: mpsc::Sender<String>,
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
        if tx.send(event_frame(&id, &event)).await.is_err() {
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

/// Write one JSON text frame to `sink`.
async fn send_text<S: Sink<Message> + Unpin>(sink: &mut S, text: String) -> Result<(), S::Error> {
    sink.send(Message::Text(Utf8Bytes::from(text))).await
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

    #[tokio::test]
    async fn an_idle_connection_is_pinged_and_answers_after_it() {
        let limits = WsLimits {
            ping_every: Duration::from_millis(20),
            ..WsLimits::default()
        };
        let mut client = connect(Arc::new(ScriptedAgent::new()), true, limits);
        for _ in 0..2 {
            let frame = tokio::time::timeout(Duration::from_secs(2), client.from_server.next())
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(frame, Message::Ping(_)), "{frame:?}");
        }
        // The first request makes the queue; its frames and the pings share the socket.
        client.send(r#"{"type":"chat","id":"a","text":"hi"}"#);
        assert_eq!(client.next_json().await["text"], "echo: hi");
        assert_eq!(client.next_json().await["type"], "done");
        drop(client.to_server);
        let closed = loop {
            match client.from_server.next().await {
                Some(Message::Close(_)) | None => break true,
                Some(Message::Ping(_)) => continue,
                Some(other) => panic!("unexpected {other:?}"),
            }
        };
        assert!(closed);
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

//! [`AgentClient`]: the agent over its Unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use ocg_core::schedule::{Delivery, DeliveryOutcome, Job, JobPatch, JobRun, NewJob};
use ocg_core::{
    Agent, ChatEvent, ChatRequest, ChatStream, Error, HealthCheck, HealthReport, HealthStatus,
    HistoryEntry, Memory, MemoryPage, NewMemory, Result, SessionInfo, StoredMemory,
};

use crate::AgentError;
use crate::event_stream::spawn_event_stream;
use crate::sse::SseDecoder;

/// [`Agent`] implemented over the agent's Unix socket, or over its TCP
/// listener with its token.
///
/// Every call opens its connection through the socket path, so an agent that
/// restarted is reached again without any reconnect logic; while it is down
/// calls fail at once with [`Error::Unavailable`] instead of hanging, whose
/// message starts with `connection refused` when the call never reached
/// the agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
    /// Where requests go: `http://agent` on the socket, the listener's
    /// origin on TCP.
    base: String,
    http: reqwest::Client,
}

impl AgentClient {
    /// A client of the agent listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, AgentError> {
        let socket = socket.into();
        let http = reqwest::Client::builder()
            .unix_socket(socket.as_path())
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| AgentError::Client(e.to_string()))?;
        Ok(AgentClient {
            socket,
            base: "http://agent".into(),
            http,
        })
    }

    /// A client of the agent's TCP listener at `addr` (`host:port`, as the
    /// agent's `OCG_AGENT_ADDR`), sending `token` (its `OCG_AGENT_TOKEN`)
    /// with every request; the token never appears in errors or logs.
    pub fn tcp(addr: &str, token: &str) -> Result<Self, AgentError> {
        let origin = format!("http://{addr}");
        let parsed = reqwest::Url::parse(&origin)
            .ok()
            .filter(|url| url.host_str().is_some() && url.port().is_some() && url.path() == "/");
        if parsed.is_none() {
            return Err(AgentError::InvalidInput(format!(
                "{addr:?} is not an agent's host:port"
            )));
        }
        let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| {
                AgentError::InvalidInput("the agent token is not a header value".into())
            })?;
        bearer.set_sensitive(true);
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, bearer)]);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| AgentError::Client(e.to_string()))?;
        Ok(AgentClient {
            socket: PathBuf::from(addr),
            base: origin,
            http,
        })
    }

    /// The socket path (the `host:port` of a TCP client).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unavailable(&self, error: &reqwest::Error) -> Error {
        let why = if error.is_connect() {
            "connection refused"
        } else if error.is_timeout() {
            "timed out"
        } else {
            "request failed"
        };
        Error::unavailable("agent", format!("{why} on {}", self.socket.display()))
    }

    async fn fetch_health(&self) -> Result<HealthReport> {
        let response = self
            .http
            .get(self.url("/health"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        if !response.status().is_success() {
            return Err(Error::unavailable(
                "agent",
                format!("health answered HTTP {}", response.status()),
            ));
        }
        response
            .json()
            .await
            .map_err(|e| Error::unavailable("agent", format!("bad health answer: {e}")))
    }
}

impl AgentClient {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        let body: serde_json::Value = if status == reqwest::StatusCode::NO_CONTENT {
            serde_json::Value::Null
        } else {
            response
                .json()
                .await
                .map_err(|e| Error::unavailable("agent", format!("bad answer: {e}")))?
        };
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("unavailable")
            .to_owned();
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("request failed")
            .to_owned();
        Err(match status.as_u16() {
            404 => Error::NotFound(message),
            400 => Error::InvalidInput(message),
            501 => Error::Unsupported(message),
            503 if code == "memory_unavailable" => Error::unavailable("memory", message),
            _ => Error::Remote { code, message },
        })
    }

    /// Summarize and archive a session's older turns; how many messages were archived.
    pub async fn compact(&self, key: &str) -> Result<u64> {
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/sessions/{}/compact", encode(key)),
                None,
            )
            .await?;
        Ok(body["archived"].as_u64().unwrap_or(0))
    }
}

fn decode_body<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T> {
    serde_json::from_value(body)
        .map_err(|e| Error::unavailable("agent", format!("unexpected answer: {e}")))
}

/// Percent-encode a session key for a path segment.
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl Agent for AgentClient {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let response = self
            .http
            .post(self.url("/v1/chat/stream"))
            .json(&request)
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("unavailable");
            let message = body["error"]["message"]
                .as_str()
                .map_or_else(|| format!("agent answered HTTP {status}"), str::to_owned);
            return Err(if status.is_client_error() && code == "invalid_input" {
                Error::InvalidInput(message)
            } else {
                Error::Remote {
                    code: code.to_owned(),
                    message,
                }
            });
        }

        let mut bytes = response.bytes_stream();
        let mut decoder = SseDecoder::default();
        let events = spawn_event_stream(move |emit| async move {
            // Each chunk's events, then what the end of the body completes.
            let mut body_done = false;
            while !body_done {
                let events = match bytes.next().await {
                    Some(Ok(chunk)) => decoder.feed(&chunk),
                    Some(Err(_)) | None => {
                        body_done = true;
                        Ok(decoder.finish())
                    }
                };
                let events = match events {
                    Ok(events) => events,
                    Err(message) => {
                        let code = "protocol".into();
                        let _ = emit.send(ChatEvent::Error { code, message }).await;
                        return;
                    }
                };
                for event in events {
                    let event =
                        serde_json::from_str::<ChatEvent>(&event.data).unwrap_or_else(|e| {
                            ChatEvent::Error {
                                code: "protocol".into(),
                                message: format!("undecodable event from the agent: {e}"),
                            }
                        });
                    let terminal = event.is_terminal();
                    if emit.send(event).await.is_err() || terminal {
                        return;
                    }
                }
            }
            let _ = emit
                .send(ChatEvent::Error {
                    code: "unavailable".into(),
                    message: "the agent closed the stream before the turn ended".into(),
                })
                .await;
        });
        Ok(events)
    }

    async fn mcp_servers(&self) -> Result<Vec<ocg_core::McpServerInfo>> {
        let body = self
            .call(reqwest::Method::GET, "/v1/mcp/servers", None)
            .await?;
        decode_body(body)
    }

    async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let body = self
            .call(reqwest::Method::GET, "/v1/sessions", None)
            .await?;
        decode_body(body)
    }

    async fn history(
        &self,
        key: &str,
        offset: u64,
        limit: u64,
        include_archived: bool,
    ) -> Result<Vec<HistoryEntry>> {
        let path = format!(
            "/v1/sessions/{}/history?offset={offset}&limit={limit}&archived={include_archived}",
            encode(key)
        );
        decode_body(self.call(reqwest::Method::GET, &path, None).await?)
    }

    async fn rename_session(&self, key: &str, title: &str) -> Result<()> {
        let path = format!("/v1/sessions/{}/rename", encode(key));
        let body = serde_json::json!({ "title": title });
        self.call(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    async fn reset_session(&self, key: &str) -> Result<()> {
        let path = format!("/v1/sessions/{}/reset", encode(key));
        self.call(reqwest::Method::POST, &path, None)
            .await
            .map(drop)
    }

    async fn delete_session(&self, key: &str) -> Result<()> {
        let path = format!("/v1/sessions/{}", encode(key));
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    async fn memory_search(&self, query: &str, limit: usize) -> Result<Vec<Memory>> {
        let body = serde_json::json!({ "query": query, "limit": limit });
        decode_body(
            self.call(reqwest::Method::POST, "/v1/memory/search", Some(body))
                .await?,
        )
    }

    async fn memory_list(&self, offset: u64, limit: u64) -> Result<MemoryPage> {
        let path = format!("/v1/memory?offset={offset}&limit={limit}");
        decode_body(self.call(reqwest::Method::GET, &path, None).await?)
    }

    async fn memory_get(&self, id: &str) -> Result<Memory> {
        let path = format!("/v1/memory/{}", encode(id));
        decode_body(self.call(reqwest::Method::GET, &path, None).await?)
    }

    async fn memory_store(&self, memory: NewMemory) -> Result<StoredMemory> {
        let body = serde_json::to_value(&memory)
            .map_err(|e| Error::InvalidInput(format!("unencodable memory: {e}")))?;
        decode_body(
            self.call(reqwest::Method::POST, "/v1/memory", Some(body))
                .await?,
        )
    }

    async fn memory_delete(&self, id: &str) -> Result<()> {
        let path = format!("/v1/memory/{}", encode(id));
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    async fn job_create(&self, job: NewJob) -> Result<Job> {
        let body = serde_json::to_value(&job)
            .map_err(|e| Error::InvalidInput(format!("unencodable job: {e}")))?;
        decode_body(
            self.call(reqwest::Method::POST, "/v1/jobs", Some(body))
                .await?,
        )
    }

    async fn job_list(&self) -> Result<Vec<Job>> {
        decode_body(self.call(reqwest::Method::GET, "/v1/jobs", None).await?)
    }

    async fn job_get(&self, id: &str) -> Result<Job> {
        let path = format!("/v1/jobs/{}", encode(id));
        decode_body(self.call(reqwest::Method::GET, &path, None).await?)
    }

    async fn job_update(&self, id: &str, patch: JobPatch) -> Result<Job> {
        let body = serde_json::to_value(&patch)
            .map_err(|e| Error::InvalidInput(format!("unencodable change: {e}")))?;
        let path = format!("/v1/jobs/{}", encode(id));
        decode_body(self.call(reqwest::Method::PATCH, &path, Some(body)).await?)
    }

    async fn job_delete(&self, id: &str) -> Result<()> {
        let path = format!("/v1/jobs/{}", encode(id));
        self.call(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    async fn job_runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>> {
        let path = format!("/v1/jobs/{}/runs?limit={limit}", encode(id));
        decode_body(self.call(reqwest::Method::GET, &path, None).await?)
    }

    async fn job_run_now(&self, id: &str) -> Result<i64> {
        let path = format!("/v1/jobs/{}/run", encode(id));
        let body = self.call(reqwest::Method::POST, &path, None).await?;
        body["occurrence_ms"]
            .as_i64()
            .ok_or_else(|| Error::unavailable("agent", "run answer without occurrence_ms"))
    }

    async fn deliveries_pending(&self, channels: &[String], wait_ms: u64) -> Result<Vec<Delivery>> {
        let body = serde_json::json!({ "channels": channels, "wait_ms": wait_ms });
        decode_body(
            self.call(reqwest::Method::POST, "/v1/deliveries/pending", Some(body))
                .await?,
        )
    }

    async fn delivery_report(&self, key: &str, outcome: DeliveryOutcome) -> Result<()> {
        let mut body = serde_json::to_value(&outcome)
            .map_err(|e| Error::InvalidInput(format!("unencodable outcome: {e}")))?;
        body["key"] = serde_json::Value::String(key.to_owned());
        self.call(reqwest::Method::POST, "/v1/deliveries/report", Some(body))
            .await
            .map(drop)
    }

    async fn models(&self) -> Result<Vec<String>> {
        let stats = self.call(reqwest::Method::GET, "/v1/stats", None).await?;
        Ok(stats["model"]
            .as_str()
            .map(|m| vec![m.to_owned()])
            .unwrap_or_default())
    }

    async fn health(&self) -> HealthReport {
        self.fetch_health()
            .await
            .unwrap_or_else(|error| HealthReport {
                service: "agent".into(),
                status: HealthStatus::Unhealthy,
                version: String::new(),
                pid: 0,
                uptime_secs: 0,
                checks: vec![HealthCheck {
                    name: "socket".into(),
                    status: HealthStatus::Unhealthy,
                    detail: Some(error.to_string()),
                }],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::Message;

    #[tokio::test]
    async fn an_absent_agent_is_unhealthy_at_once() {
        let client = AgentClient::new("/nonexistent/ocg-agent.sock").unwrap();
        let report = client.health().await;
        assert_eq!(report.status, HealthStatus::Unhealthy);
        let error = client
            .chat(ChatRequest::user("web:1", "hi"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), "unavailable");
    }

    #[tokio::test]
    async fn streams_events_over_a_real_socket() {
        use axum::response::sse::{Event, Sse};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let router = axum::Router::new().route(
            "/v1/chat/stream",
            axum::routing::post(|| async {
                let events = [
                    ChatEvent::Delta { text: "Hel".into() },
                    ChatEvent::Delta { text: "lo".into() },
                    ChatEvent::Done {
                        message: Message::assistant("Hello"),
                        usage: None,
                        session_key: Some("web:1".into()),
                    },
                ]
                .map(|e| Ok::<_, std::convert::Infallible>(Event::default().json_data(e).unwrap()));
                Sse::new(futures_util::stream::iter(events))
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await });

        let client = AgentClient::new(&path).unwrap();
        let mut stream = client
            .chat_stream(ChatRequest::user("web:1", "hi"))
            .await
            .unwrap();
        let mut deltas = String::new();
        while let Some(event) = stream.next().await {
            match event {
                ChatEvent::Delta { text } => deltas.push_str(&text),
                ChatEvent::Done { message, .. } => {
                    assert_eq!(message.content, "Hello");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(deltas, "Hello");
    }
}

//! [`McpServers`]: every configured MCP server kept connected, and its tools.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ocg_core::{HealthCheck, McpServerInfo, McpServerState};
use rmcp::model::{
    CallToolRequestParams, ClientRequest, PingRequest, ProtocolVersion, ServerNotification,
    SubscriptionFilter,
};
use rmcp::{Peer, RoleClient, ServiceError};
use tokio::sync::{mpsc, watch};

use super::config::{InvalidServer, McpConfig, ServerConfig};
use super::connect::{self, Handler, Launcher};
use crate::AgentError;

/// The longest tool name model vendors take.
pub const MAX_TOOL_NAME: usize = 64;

/// The first wait before a failed server is tried again; it doubles up to
/// [`MAX_BACKOFF`] and starts over after a minute of good health.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often a connected server is pinged, so a dead HTTP server is noticed
/// without waiting for a call.
const PING_EVERY: Duration = Duration::from_secs(30);

/// One tool of an MCP server, as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// Its name for the model: `<server>__<tool>`.
    pub name: String,
    /// The server.
    pub server: String,
    /// The tool's own name on its server.
    pub tool: String,
    /// What it does (the server's description).
    pub description: String,
    /// Its input's JSON schema.
    pub parameters: serde_json::Value,
    /// Whether the server says it only reads (`readOnlyHint`).
    pub read_only: bool,
}

/// Whether a tool may be offered: `(server, full tool name)`.
pub type ToolFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The MCP servers of one agent and their tools. Cheap to clone.
///
/// Each enabled server has a task that starts or connects it, lists its
/// tools (again whenever it says they changed), pings it, and when it fails
/// or dies reports that and tries again with backoff. Only the tools of
/// running servers are offered, so a dead server's tools leave the prompt
/// until it is back; chat goes on.
#[derive(Clone)]
pub struct McpServers {
    shared: Arc<Shared>,
}

struct Shared {
    servers: Vec<Arc<Slot>>,
    /// The entries of `mcp.json` that cannot be used, reported as failed.
    invalid: Vec<InvalidServer>,
    /// Why `mcp.json` could not be used.
    config_error: Option<String>,
    /// Bumped whenever the set of offered tools may have changed.
    generation: AtomicU64,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Slot {
    config: ServerConfig,
    live: Mutex<Live>,
    /// Told when a call lost the transport: ping now rather than at the
    /// next tick, so a dead HTTP server is marked failed (and its tools
    /// leave the prompt) at once.
    check_now: tokio::sync::Notify,
}

struct Live {
    state: McpServerState,
    detail: Option<String>,
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Arc<McpTool>>,
    restarts: u32,
}

impl std::fmt::Debug for McpServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .shared
            .servers
            .iter()
            .map(|s| s.config.name.as_str())
            .collect();
        f.debug_struct("McpServers")
            .field("servers", &names)
            .finish_non_exhaustive()
    }
}

impl Slot {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl McpServers {
    fn from_parts(
        servers: Vec<Arc<Slot>>,
        invalid: Vec<InvalidServer>,
        config_error: Option<String>,
    ) -> Self {
        McpServers {
            shared: Arc::new(Shared {
                servers,
                invalid,
                config_error,
                generation: AtomicU64::new(0),
                stop: watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// No servers.
    pub fn none() -> Self {
        Self::from_parts(Vec::new(), Vec::new(), None)
    }

    /// No servers, because the configuration could not be used: reported
    /// as a failing `mcp` health check, chat goes on.
    pub fn invalid(error: &AgentError) -> Self {
        Self::from_parts(
            Vec::new(),
            Vec::new(),
            Some(format!("{}: {error}", error.code())),
        )
    }

    /// Start keeping every enabled server of `config` connected. `offer`
    /// says which tools may be offered (the tool policy): the others are
    /// never listed nor called. Needs a Tokio runtime.
    pub fn start(config: McpConfig, launcher: Launcher, offer: ToolFilter) -> Self {
        let slots: Vec<Arc<Slot>> = config
            .servers
            .into_iter()
            .map(|config| {
                let state = if config.disabled {
                    McpServerState::Disabled
                } else {
                    McpServerState::Starting
                };
                Arc::new(Slot {
                    config,
                    check_now: tokio::sync::Notify::new(),
                    live: Mutex::new(Live {
                        state,
                        detail: None,
                        peer: None,
                        tools: Vec::new(),
                        restarts: 0,
                    }),
                })
            })
            .collect();
        let servers = Self::from_parts(slots, config.invalid, None);
        let launcher = Arc::new(launcher);
        let tasks = servers
            .shared
            .servers
            .iter()
            .filter(|slot| !slot.config.disabled)
            .map(|slot| {
                tokio::spawn(keep_connected(
                    slot.clone(),
                    servers.shared.clone(),
                    launcher.clone(),
                    offer.clone(),
                ))
            })
            .collect();
        *servers
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = tasks;
        servers
    }

    /// The configured servers' names, usable or not.
    pub fn names(&self) -> Vec<String> {
        let shared = &self.shared;
        let usable = shared.servers.iter().map(|s| s.config.name.clone());
        usable
            .chain(shared.invalid.iter().map(|s| s.name.clone()))
            .collect()
    }

    /// A number that changes whenever [`tools`](Self::tools) may have.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The tools offered now: those of running servers.
    pub fn tools(&self) -> Vec<Arc<McpTool>> {
        self.shared
            .servers
            .iter()
            .flat_map(|slot| {
                let live = slot.live();
                if live.state == McpServerState::Running {
                    live.tools.clone()
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// The offered tool called `name`.
    pub fn tool(&self, name: &str) -> Option<Arc<McpTool>> {
        let live = self.slot_of(name)?.live();
        live.tools.iter().find(|t| t.name == name).cloned()
    }

    /// The server of the tool called `name` (`<server>__<tool>`).
    fn slot_of(&self, name: &str) -> Option<&Arc<Slot>> {
        let (server, _) = name.split_once("__")?;
        self.shared.servers.iter().find(|s| s.config.name == server)
    }

    /// Call the tool `name` (`<server>__<tool>`) with `arguments` (an object
    /// or null), within its server's timeout. Tool errors carry stable codes:
    /// `not_allowed` (no such tool offered), `mcp_unavailable` (its server is
    /// not running), `mcp_timeout`, `mcp_server_died` (it stopped during the
    /// call; it is being restarted), `mcp_error` (a protocol error) and
    /// `mcp_tool_error` (the tool itself reported a failure).
    pub async fn call(
        &self,
        name: &str,
        arguments: serde_json::Value,
    ) -> Result<String, AgentError> {
        let Some(slot) = self.slot_of(name) else {
            return Err(AgentError::tool("not_allowed", format!("no tool {name:?}")));
        };
        let server = slot.config.name.as_str();
        let (peer, tool) = {
            let live = slot.live();
            let tool = live.tools.iter().find(|t| t.name == name).cloned();
            match (&live.peer, tool, live.state) {
                (Some(peer), Some(tool), McpServerState::Running) => (peer.clone(), tool),
                (_, None, McpServerState::Running) => {
                    return Err(AgentError::tool(
                        "not_allowed",
                        format!("MCP server {server} offers no tool {name:?}"),
                    ));
                }
                _ => {
                    return Err(AgentError::tool(
                        "mcp_unavailable",
                        format!(
                            "MCP server {server} is not running now ({}); try again later",
                            live.detail.as_deref().unwrap_or("starting")
                        ),
                    ));
                }
            }
        };
        let arguments = match arguments {
            serde_json::Value::Object(map) => Some(map),
            serde_json::Value::Null => None,
            other => {
                return Err(AgentError::tool(
                    "invalid_arguments",
                    format!("{name}: arguments must be a JSON object, not {other}"),
                ));
            }
        };
        let mut params = CallToolRequestParams::new(tool.tool.clone());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let timeout = slot.config.timeout;
        let result = match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => {
                return Err(AgentError::tool(
                    "mcp_timeout",
                    format!("{name} did not answer within {} s", timeout.as_secs_f64()),
                ));
            }
            Ok(Err(
                ServiceError::TransportClosed
                | ServiceError::TransportSend(_)
                | ServiceError::Cancelled { .. },
            )) => {
                slot.check_now.notify_one();
                return Err(AgentError::tool(
                    "mcp_server_died",
                    format!(
                        "MCP server {server} stopped during the call of {name}; \
                         it is being restarted"
                    ),
                ));
            }
            Ok(Err(error)) => {
                return Err(AgentError::tool("mcp_error", format!("{name}: {error}")));
            }
            Ok(Ok(result)) => result,
        };
        let text = super::result::render(&result);
        if result.is_error == Some(true) {
            return Err(AgentError::tool("mcp_tool_error", text));
        }
        Ok(text)
    }

    /// Every configured server, its state and its offered tools.
    pub fn status(&self) -> Vec<McpServerInfo> {
        self.shared
            .servers
            .iter()
            .map(|slot| {
                let live = slot.live();
                McpServerInfo {
                    name: slot.config.name.clone(),
                    transport: slot.config.transport.kind().to_owned(),
                    state: live.state,
                    detail: live.detail.clone(),
                    tools: if live.state == McpServerState::Running {
                        live.tools.iter().map(|t| t.name.clone()).collect()
                    } else {
                        Vec::new()
                    },
                    restarts: live.restarts,
                }
            })
            .chain(self.shared.invalid.iter().map(|server| McpServerInfo {
                name: server.name.clone(),
                transport: server.transport.to_owned(),
                state: McpServerState::Failed,
                detail: Some(server.reason.clone()),
                tools: Vec::new(),
                restarts: 0,
            }))
            .collect()
    }

    /// The `mcp` health check: `None` without servers; failing while a
    /// server is failed or the configuration is unusable.
    pub fn check(&self) -> Option<HealthCheck> {
        if let Some(error) = &self.shared.config_error {
            return Some(HealthCheck::failing("mcp", error.clone()));
        }
        if self.shared.servers.is_empty() && self.shared.invalid.is_empty() {
            return None;
        }
        let status = self.status();
        let failed: Vec<String> = status
            .iter()
            .filter(|s| s.state == McpServerState::Failed)
            .map(|s| format!("{}: {}", s.name, s.detail.as_deref().unwrap_or("failed")))
            .collect();
        if !failed.is_empty() {
            return Some(HealthCheck::failing("mcp", failed.join("; ")));
        }
        let starting: Vec<&str> = status
            .iter()
            .filter(|s| s.state == McpServerState::Starting)
            .map(|s| s.name.as_str())
            .collect();
        if !starting.is_empty() {
            return Some(HealthCheck::starting(
                "mcp",
                format!("starting {}", starting.join(", ")),
            ));
        }
        let running = status
            .iter()
            .filter(|s| s.state == McpServerState::Running)
            .count();
        let tools: usize = status.iter().map(|s| s.tools.len()).sum();
        Some(HealthCheck::ok(
            "mcp",
            Some(format!("{running} servers running, {tools} tools")),
        ))
    }

    /// Stop every server (stdio programs get their stdin closed, then their
    /// process group is killed) and wait for their tasks.
    pub async fn shutdown(&self) {
        let _ = self.shared.stop.send(true);
        let tasks =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Shared {
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn set(&self, slot: &Slot, state: McpServerState, detail: Option<String>) {
        {
            let mut live = slot.live();
            live.state = state;
            live.detail = detail;
            if state != McpServerState::Running {
                live.peer = None;
            }
        }
        self.changed();
    }
}

/// The task of one server: connect, serve, and on failure try again.
async fn keep_connected(
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    launcher: Arc<Launcher>,
    offer: ToolFilter,
) {
    let name = slot.config.name.clone();
    let mut stop = shared.stop.subscribe();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (changed, mut changes) = mpsc::unbounded_channel();
        let handler = Handler {
            changed: changed.clone(),
        };
        let connected = tokio::select! {
            connected = connect::connect(&slot.config, &launcher, handler) => connected,
            _ = stopped(&mut stop) => return,
        };
        let why = match connected {
            Err(why) => why,
            Ok(connection) => {
                let connect::Connection {
                    session,
                    mut child,
                    stderr,
                } = connection;
                let peer = session.peer().clone();
                let detail = peer.peer_info().and_then(|info| {
                    info.server_info
                        .as_ref()
                        .map(|s| format!("{} {}", s.name, s.version))
                });
                let listed = list_tools(&name, &peer, &offer).await;
                let started = Instant::now();
                let ended = match listed {
                    Err(why) => Some(why),
                    Ok(tools) => {
                        tracing::info!(
                            server = %name,
                            tools = tools.len(),
                            "MCP server running"
                        );
                        {
                            let mut live = slot.live();
                            live.tools = tools;
                            live.peer = Some(peer.clone());
                        }
                        shared.set(&slot, McpServerState::Running, detail);
                        let _listening = listen_for_changes(&name, &peer, changed.clone());
                        let serving = Serving {
                            slot: &slot,
                            shared: &shared,
                            offer: &offer,
                            peer: &peer,
                        };
                        serving
                            .serve(session, &mut child, &mut changes, &mut stop)
                            .await
                    }
                };
                if let Some(child) = child.as_mut() {
                    connect::end_child(child).await;
                }
                let Some(why) = ended else {
                    return;
                };
                if child.is_some() {
                    // The stderr reader may still hold the last words.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                slot.live().restarts += 1;
                if started.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                stderr.explain(&why)
            }
        };
        tracing::warn!(server = %name, %why, retry_in_ms = backoff.as_millis() as u64, "MCP server failed");
        shared.set(
            &slot,
            McpServerState::Failed,
            Some(format!(
                "{why} (retrying in {:.1} s)",
                backoff.as_secs_f64()
            )),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        shared.set(&slot, McpServerState::Starting, None);
    }
}

/// One running connection of a server, as its task serves it.
struct Serving<'a> {
    slot: &'a Slot,
    shared: &'a Shared,
    offer: &'a ToolFilter,
    peer: &'a Peer<RoleClient>,
}

impl Serving<'_> {
    /// Serve until the server fails (why) or the servers are told to stop
    /// (`None`, the session closed): list the tools again when they
    /// change, ping every [`PING_EVERY`] or when a call lost the transport,
    /// notice a stdio program's exit.
    async fn serve(
        &self,
        session: connect::Session,
        child: &mut Option<tokio::process::Child>,
        changes: &mut mpsc::UnboundedReceiver<()>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<String> {
        let name = self.slot.config.name.as_str();
        let token = session.cancellation_token();
        let waiting = session.waiting();
        tokio::pin!(waiting);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            let child_exit = async {
                match child.as_mut() {
                    Some(child) => child.wait().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = changes.recv() => {
                    match list_tools(name, self.peer, self.offer).await {
                        Ok(tools) => {
                            tracing::info!(server = %name, tools = tools.len(), "MCP tools changed");
                            self.slot.live().tools = tools;
                            self.shared.changed();
                        }
                        Err(why) => tracing::warn!(server = %name, %why, "MCP tools could not be listed again"),
                    }
                }
                () = async {
                    tokio::select! {
                        _ = ping.tick() => {}
                        () = self.slot.check_now.notified() => {}
                    }
                } => {
                    if !answers_ping(self.peer).await {
                        token.cancel();
                        return Some("it stopped answering pings".to_owned());
                    }
                }
                status = child_exit => {
                    token.cancel();
                    return Some(match status {
                        Some(status) => format!("it exited ({status})"),
                        None => "it exited".to_owned(),
                    });
                }
                _ = &mut waiting => return Some("its connection ended".to_owned()),
                _ = stopped(stop) => {
                    token.cancel();
                    let _ = (&mut waiting).await;
                    return None;
                }
            }
        }
    }
}

/// Whether the server answers a ping within 10 s. An error answer is an
/// answer: servers of 2026-07-28 refuse the legacy ping.
async fn answers_ping(peer: &Peer<RoleClient>) -> bool {
    let request = ClientRequest::PingRequest(PingRequest {
        method: Default::default(),
        extensions: Default::default(),
    });
    let pinged = tokio::time::timeout(Duration::from_secs(10), peer.send_request(request)).await;
    matches!(pinged, Ok(Ok(_) | Err(ServiceError::McpError(_))))
}

/// On servers of protocol 2026-07-28 and later, which say a tool list
/// changed only on a `subscriptions/listen` stream, open one and pass its
/// `tools/list_changed` on; older servers send the notification unasked
/// (to [`Handler`]). The task ends with the connection, or when dropped.
fn listen_for_changes(
    name: &str,
    peer: &Peer<RoleClient>,
    changed: mpsc::UnboundedSender<()>,
) -> Option<AbortOnDrop> {
    let info = peer.peer_info()?;
    let announces = info
        .capabilities
        .tools
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true));
    if !announces || info.protocol_version < ProtocolVersion::V_2026_07_28 {
        return None;
    }
    let (name, peer) = (name.to_owned(), peer.clone());
    Some(AbortOnDrop(tokio::spawn(async move {
        let filter = SubscriptionFilter::builder().tools_list_changed().build();
        let mut subscription = match peer.listen(filter).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(server = %name, %error, "MCP tool list changes not followed");
                return;
            }
        };
        while let Ok(Some(notification)) = subscription.next().await {
            if matches!(
                notification,
                ServerNotification::ToolListChangedNotification(_)
            ) {
                let _ = changed.send(());
            }
        }
    })))
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once the servers are told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The server's tools that `offer` allows, named `<server>__<tool>`.
async fn list_tools(
    server: &str,
    peer: &Peer<RoleClient>,
    offer: &ToolFilter,
) -> Result<Vec<Arc<McpTool>>, String> {
    let listed = tokio::time::timeout(Duration::from_secs(30), peer.list_all_tools())
        .await
        .map_err(|_| "it did not list its tools within 30 s".to_owned())?
        .map_err(|e| format!("listing its tools failed: {e}"))?;
    let mut tools: Vec<Arc<McpTool>> = Vec::new();
    for tool in listed {
        let name = qualified(server, &tool.name);
        if name.len() > MAX_TOOL_NAME {
            tracing::warn!(server, tool = %tool.name, "MCP tool skipped: its full name is longer than 64");
            continue;
        }
        if tools.iter().any(|t| t.name == name) {
            tracing::warn!(server, tool = %tool.name, "MCP tool skipped: its name clashes with another");
            continue;
        }
        if !offer(server, &name) {
            continue;
        }
        tools.push(Arc::new(McpTool {
            description: tool
                .description
                .as_deref()
                .or(tool.title.as_deref())
                .unwrap_or("")
                .to_owned(),
            parameters: serde_json::Value::Object((*tool.input_schema).clone()),
            read_only: tool
                .annotations
                .as_ref()
                .and_then(|a| a.read_only_hint)
                .unwrap_or(false),
            tool: tool.name.into_owned(),
            server: server.to_owned(),
            name,
        }));
    }
    Ok(tools)
}

/// `<server>__<tool>`, with what model vendors refuse in a tool name
/// (anything but letters, digits, `_` and `-`) made `_`.
pub fn qualified(server: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{server}__{tool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_vendors_take() {
        assert_eq!(qualified("files", "read_file"), "files__read_file");
        assert_eq!(qualified("git", "log.show v2"), "git__log_show_v2");
    }

    #[test]
    fn without_servers_there_is_no_check_and_a_bad_file_fails_it() {
        assert!(McpServers::none().check().is_none());
        let error = AgentError::McpConfig {
            path: "mcp.json".into(),
            message: "expected value".into(),
        };
        let check = McpServers::invalid(&error).check().unwrap();
        assert_eq!(check.status, ocg_core::HealthStatus::Degraded);
        assert!(check.detail.unwrap().contains("mcp.json"));
    }
}

//! [`McpServer`]: an agent's long-term memory and chat as MCP tools, for an
//! editor or another assistant.

use std::sync::Arc;

use ocg_core::{Agent, ChatRequest, NewMemory};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::AgentError;

/// The most memories one `memory_search` or `memory_list` returns.
const MAX_LIMIT: u64 = 100;

/// The largest MCP request over HTTP.
#[cfg(feature = "mcp-http")]
const MAX_HTTP_BODY: usize = 1024 * 1024;

/// What [`McpServer::http_service`] returns: a tower service of
/// `http::Request`s.
#[cfg(feature = "mcp-http")]
pub type McpHttpService = rmcp::transport::StreamableHttpService<
    McpServer,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
>;

/// An [`Agent`]'s memory and chat offered as Model Context Protocol tools:
/// `memory_search`, `memory_store`, `memory_get`, `memory_list`,
/// `memory_delete` and `chat`.
///
/// Serve it with rmcp over any transport: stdio (`ocg mcp`) or streamable
/// HTTP (the gateway's `/mcp`). Errors of the agent come back as tool
/// results marked as errors, with the agent's stable code first
/// (`not_found: …`), so the calling model can read them.
#[derive(Clone)]
pub struct McpServer {
    agent: Arc<dyn Agent>,
    session_prefix: String,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("session_prefix", &self.session_prefix)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// Offer `agent`'s memory and chat; `chat` turns go to sessions named
    /// `mcp:<session>`.
    pub fn new(agent: Arc<dyn Agent>) -> Self {
        McpServer {
            agent,
            session_prefix: "mcp".into(),
        }
    }

    /// Name `chat`'s sessions `<prefix>:<session>` instead of `mcp:<session>`.
    pub fn with_session_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.session_prefix = prefix.into();
        self
    }

    /// Serve one client on `read` and `write` (stdin and stdout for
    /// `ocg mcp`) until it goes away.
    pub async fn serve_stream<R, W>(self, read: R, write: W) -> Result<(), AgentError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let failed = |e: String| AgentError::Serve(std::io::Error::other(e));
        let running = rmcp::ServiceExt::serve(self, (read, write))
            .await
            .map_err(|e| failed(format!("MCP handshake: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| failed(format!("MCP session: {e}")))?;
        Ok(())
    }

    /// A streamable HTTP endpoint serving a fresh `McpServer` per MCP
    /// session, answering only requests whose `Host` is one of
    /// `allowed_hosts` (names or addresses, without port), against DNS
    /// rebinding; any when it is empty. Authentication is the mounting
    /// server's job.
    #[cfg(feature = "mcp-http")]
    pub fn http_service(self, allowed_hosts: Vec<String>) -> McpHttpService {
        use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(allowed_hosts)
            .with_max_request_body_bytes(MAX_HTTP_BODY);
        rmcp::transport::StreamableHttpService::new(
            move || Ok(self.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        )
    }

    /// The tools offered, with their JSON schemas.
    pub fn tools() -> Vec<Tool> {
        let read_only = || ToolAnnotations::new().read_only(true);
        vec![
            tool(
                "memory_search",
                "Search the long-term memory by meaning and keywords; the best matches first, each with its id and score.",
                json!({
                    "query": {"type": "string", "description": "What to look for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "How many results (default 5)."}
                }),
                &["query"],
            )
            .with_annotations(read_only()),
            tool(
                "memory_store",
                "Remember a fact for later sessions. A near-identical memory is updated instead of added.",
                json!({
                    "text": {"type": "string", "description": "The fact, in a sentence or a few."},
                    "category": {"type": "string", "description": "preference, fact, person, task, … (default fact)."},
                    "importance": {"type": "number", "minimum": 0, "maximum": 1, "description": "How much it matters (default 0.5)."}
                }),
                &["text"],
            ),
            tool(
                "memory_get",
                "One memory by its id.",
                json!({"id": {"type": "string"}}),
                &["id"],
            )
            .with_annotations(read_only()),
            tool(
                "memory_list",
                "The memories, newest first, a page at a time, with the total count.",
                json!({
                    "offset": {"type": "integer", "minimum": 0, "description": "How many to skip (default 0)."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "Page size (default 20)."}
                }),
                &[],
            )
            .with_annotations(read_only()),
            tool(
                "memory_delete",
                "Forget one memory by its id.",
                json!({"id": {"type": "string"}}),
                &["id"],
            )
            .with_annotations(ToolAnnotations::new().destructive(true)),
            tool(
                "chat",
                "Ask the assistant: one turn in a session it remembers, answered with its tools and memory.",
                json!({
                    "message": {"type": "string", "description": "What to say."},
                    "session": {"type": "string", "description": "Which conversation to continue (default \"default\")."}
                }),
                &["message"],
            ),
        ]
    }

    async fn run(&self, name: &str, args: &JsonObject) -> Result<CallToolResult, Failure> {
        let agent = &self.agent;
        let structured = |value: Result<Value, serde_json::Error>| {
            value
                .map(CallToolResult::structured)
                .map_err(|e| Failure::Agent(format!("internal: {e}")))
        };
        match name {
            "memory_search" => {
                let query = string(args, "query")?;
                let limit = integer(args, "limit", 5, 1, MAX_LIMIT)?;
                let found = agent.memory_search(&query, limit as usize).await?;
                structured(serde_json::to_value(json!({ "memories": found })))
            }
            "memory_store" => {
                let memory = NewMemory {
                    text: string(args, "text")?,
                    category: optional_string(args, "category")?,
                    importance: match args.get("importance") {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(v.as_f64().ok_or_else(|| {
                            Failure::Arguments("importance must be a number".into())
                        })? as f32),
                    },
                    session: None,
                };
                structured(serde_json::to_value(agent.memory_store(memory).await?))
            }
            "memory_get" => {
                let id = string(args, "id")?;
                structured(serde_json::to_value(agent.memory_get(&id).await?))
            }
            "memory_list" => {
                let offset = integer(args, "offset", 0, 0, u64::MAX)?;
                let limit = integer(args, "limit", 20, 1, MAX_LIMIT)?;
                structured(serde_json::to_value(
                    agent.memory_list(offset, limit).await?,
                ))
            }
            "memory_delete" => {
                let id = string(args, "id")?;
                agent.memory_delete(&id).await?;
                Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "memory {id} deleted"
                ))]))
            }
            "chat" => {
                let message = string(args, "message")?;
                let session = optional_string(args, "session")?.unwrap_or_else(|| "default".into());
                let key = format!("{}:{session}", self.session_prefix);
                let reply = agent.chat(ChatRequest::user(key, message)).await?;
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    reply.message.content,
                )]))
            }
            _ => Err(Failure::UnknownTool),
        }
    }
}

/// Why a call did not succeed.
enum Failure {
    /// Not one of [`McpServer::tools`]: a protocol error.
    UnknownTool,
    /// The arguments do not fit the schema: a tool error the model can fix.
    Arguments(String),
    /// The agent refused or failed: a tool error with its code.
    Agent(String),
}

impl From<ocg_core::Error> for Failure {
    fn from(error: ocg_core::Error) -> Self {
        Failure::Agent(format!("{}: {error}", error.code()))
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ocg", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "OCG's long-term memory (memory_search before answering from what \
                 the user said before, memory_store for what should outlive this \
                 conversation) and its assistant (chat).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        match self.run(&request.name, &args).await {
            Ok(result) => Ok(result.into()),
            Err(Failure::UnknownTool) => Err(ErrorData::invalid_params(
                format!("unknown tool {}", request.name),
                None,
            )),
            Err(Failure::Arguments(why)) => Ok(CallToolResult::error(vec![ContentBlock::text(
                format!("invalid_arguments: {why}"),
            )])
            .into()),
            Err(Failure::Agent(why)) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into())
            }
        }
    }
}

fn tool(
    name: &'static str,
    description: &'static str,
    properties: Value,
    required: &[&str],
) -> Tool {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), properties);
    schema.insert("required".into(), json!(required));
    schema.insert("additionalProperties".into(), json!(false));
    Tool::new(name, description, schema)
}

fn string(args: &JsonObject, key: &str) -> Result<String, Failure> {
    optional_string(args, key)?.ok_or_else(|| Failure::Arguments(format!("{key} is required")))
}

fn optional_string(args: &JsonObject, key: &str) -> Result<Option<String>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Failure::Arguments(format!("{key} must be a string"))),
    }
}

fn integer(args: &JsonObject, key: &str, default: u64, min: u64, max: u64) -> Result<u64, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Failure::Arguments(format!("{key} must be an integer from {min} to {max}"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_naming_its_required_properties() {
        let tools = McpServer::tools();
        assert_eq!(tools.len(), 6);
        for tool in tools {
            let schema = &tool.input_schema;
            assert_eq!(schema["type"], "object", "{}", tool.name);
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                assert!(
                    schema["properties"].get(name).is_some(),
                    "{}: {name}",
                    tool.name
                );
            }
        }
    }

    #[test]
    fn arguments_are_checked_before_the_agent_is_asked() {
        let args: JsonObject =
            serde_json::from_value(json!({"limit": 0, "query": 3})).unwrap_or_default();
        assert!(
            matches!(string(&args, "query"), Err(Failure::Arguments(m)) if m.contains("string"))
        );
        assert!(
            matches!(string(&args, "text"), Err(Failure::Arguments(m)) if m.contains("required"))
        );
        assert!(matches!(
            integer(&args, "limit", 5, 1, 100),
            Err(Failure::Arguments(_))
        ));
        assert!(matches!(integer(&args, "offset", 7, 0, 100), Ok(7)));
    }
}

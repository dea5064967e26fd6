//! Run with: bench/mcp.sh   (builds in release, then runs this)
//!
//! The latency a tool call through MCP adds over the same tool built in.
//! One tool, `memory_get` of an in-memory agent, called through the
//! `ToolRegistry` the runtime uses, three ways:
//!
//! - baseline: built in, a `Tool` calling the agent in process;
//! - stdio: `McpServers` running this program as a stdio MCP server
//!   (`McpServer`, confined by the kernel sandbox like any stdio server),
//!   the registry calling `mem__memory_get`;
//! - streamable HTTP: the same `McpServer` behind axum on loopback, as the
//!   gateway's `/mcp` serves it.
//!
//! Sequential calls, interleaved in rounds so drift hits all alike. Prints
//! one table with p50/p99 and the ratio to the baseline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ocg_agent_lib::mcp::{Launcher, McpConfig, McpServer, McpServers};
use ocg_agent_lib::tools::{ExecSandbox, Tool, ToolContext, ToolGroup, ToolPolicy, ToolRegistry};
use ocg_agent_lib::{AgentError, ToolExecutor};
use ocg_core::testing::ScriptedAgent;
use ocg_core::{Agent, NewMemory, ToolCall};
use ocg_tests::bench::percentile;
use serde_json::json;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 100;
const WARMUP: usize = 100;

/// The memory every server holds: one fact, so `memory_get` finds it.
async fn agent_with_a_fact() -> (Arc<ScriptedAgent>, String) {
    let agent = Arc::new(ScriptedAgent::new().with_memory());
    let stored = agent
        .memory_store(NewMemory::text("The benchmark's fact"))
        .await
        .unwrap();
    (agent, stored.memory.id)
}

/// `memory_get` built in.
struct BuiltIn(Arc<ScriptedAgent>);

#[async_trait]
impl Tool for BuiltIn {
    fn name(&self) -> &'static str {
        "memory_get"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Memory
    }
    fn description(&self) -> &'static str {
        "One memory by its id."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]})
    }
    async fn call(
        &self,
        _context: &ToolContext,
        arguments: serde_json::Value,
    ) -> Result<String, AgentError> {
        let id = arguments["id"].as_str().unwrap_or_default();
        let memory = self
            .0
            .memory_get(id)
            .await
            .map_err(|e| AgentError::tool("not_found", e.to_string()))?;
        Ok(serde_json::to_string(&memory).unwrap())
    }
}

async fn timed(tools: &ToolRegistry, call: &ToolCall) -> f64 {
    let start = Instant::now();
    let out = tools.call(Some("bench"), call).await;
    assert!(out.ok, "{}", out.content);
    assert!(out.content.contains("benchmark's fact"), "{}", out.content);
    start.elapsed().as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.next() {
        Some(mode) if mode == ocg_process::sandbox::HELPER_MODE => {
            let error = ocg_process::sandbox::helper_main(args);
            anyhow::bail!("sandbox: {error}")
        }
        Some(mode) if mode == "serve" => runtime.block_on(async {
            let (agent, _) = agent_with_a_fact().await;
            McpServer::new(agent)
                .serve_stream(tokio::io::stdin(), tokio::io::stdout())
                .await?;
            Ok(())
        }),
        _ => runtime.block_on(bench()),
    }
}

/// The registry with `servers`' tools, once every server runs.
async fn registry_with(servers: McpServers) -> ToolRegistry {
    for _ in 0..600 {
        if servers.tool("mem__memory_get").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        servers.tool("mem__memory_get").is_some(),
        "{:?}",
        servers.status()
    );
    ToolRegistry::with_mcp(Vec::new(), ToolPolicy::default(), servers).unwrap()
}

async fn bench() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let launcher = Launcher {
        workspace: dir.path().to_path_buf(),
        homes: dir.path().join("homes"),
        sandbox: ExecSandbox::Kernel {
            helper: exe.clone(),
            network: false,
        },
        protected: Vec::new(),
        allow_private: false,
    };

    // Built in.
    let (agent, id) = agent_with_a_fact().await;
    let builtin = ToolRegistry::new(vec![Arc::new(BuiltIn(agent))], ToolPolicy::default())?;

    // Over stdio: this program as the server, its own memory.
    let config = |server: serde_json::Value| {
        McpConfig::parse(
            std::path::Path::new("bench"),
            &json!({"mcpServers": {"mem": server}}).to_string(),
            |_| None,
        )
        .unwrap()
    };
    let stdio_servers = McpServers::start(
        config(json!({"command": exe, "args": ["serve"]})),
        launcher.clone(),
        Arc::new(|_, _| true),
    );

    // Over streamable HTTP on loopback.
    let (http_agent, http_id) = agent_with_a_fact().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let service = McpServer::new(http_agent).http_service(vec!["127.0.0.1".into()]);
    let app = axum::Router::new().route_service("/mcp", service);
    // As the gateway serves: TCP_NODELAY, or each small write may wait for
    // the client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http_servers = McpServers::start(
        config(json!({"url": format!("http://{addr}/mcp")})),
        launcher,
        Arc::new(|_, _| true),
    );

    let stdio = registry_with(stdio_servers.clone()).await;
    let http = registry_with(http_servers.clone()).await;
    let call = |name: &str, id: &str| ToolCall {
        id: "1".into(),
        name: name.into(),
        arguments: json!({ "id": id }),
    };
    // The stdio server holds its own memory, whose first id is the same.
    let (base_call, stdio_call, http_call) = (
        call("memory_get", &id),
        call("mem__memory_get", &id),
        call("mem__memory_get", &http_id),
    );
    for _ in 0..WARMUP {
        timed(&builtin, &base_call).await;
        timed(&stdio, &stdio_call).await;
        timed(&http, &http_call).await;
    }
    let (mut base, mut over_stdio, mut over_http) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            base.push(timed(&builtin, &base_call).await);
        }
        for _ in 0..PER_ROUND {
            over_stdio.push(timed(&stdio, &stdio_call).await);
        }
        for _ in 0..PER_ROUND {
            over_http.push(timed(&http, &http_call).await);
        }
    }
    stdio_servers.shutdown().await;
    http_servers.shutdown().await;

    let base50 = percentile(&mut base, 0.5);
    let base99 = percentile(&mut base, 0.99);
    println!();
    println!(
        "MCP tool call latency: memory_get through the ToolRegistry, {} calls each, interleaved ({} cores)",
        ROUNDS * PER_ROUND,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| | p50 ms | p99 ms | p50 added ms | p99 added ms | p50 vs baseline | p99 vs baseline |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("| baseline: the tool built in | {base50:.3} | {base99:.3} | 0 | 0 | 1.00× | 1.00× |");
    for (name, samples) in [
        ("MCP over stdio (sandboxed child)", &mut over_stdio),
        ("MCP over streamable HTTP (loopback)", &mut over_http),
    ] {
        let p50 = percentile(samples, 0.5);
        let p99 = percentile(samples, 0.99);
        println!(
            "| {name} | {p50:.3} | {p99:.3} | {:.3} | {:.3} | {:.0}× | {:.0}× |",
            p50 - base50,
            p99 - base99,
            p50 / base50,
            p99 / base99
        );
    }
    Ok(())
}

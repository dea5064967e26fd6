//! MCP both ways, in one program: it serves an agent's memory as an MCP
//! server (`McpServer`, the way `ocg mcp` does), and starts itself as a
//! stdio MCP server of an `mcp.json` (`McpServers`, the way `ocg-agent`
//! does), confined by the kernel sandbox, then calls that server's tools
//! the way the agent's tool registry does.
//!
//!     cargo run -p example-mcp
//!     cargo run -p example-mcp -- path/to/mcp.json    # your own servers

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ocg_agent_lib::mcp::{Launcher, McpConfig, McpServer, McpServers};
use ocg_agent_lib::tools::ExecSandbox;
use ocg_core::McpServerState;
use ocg_core::testing::ScriptedAgent;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        // The sandbox helper: confine this process, then exec the server.
        Some(mode) if mode == ocg_process::sandbox::HELPER_MODE => {
            let error = ocg_process::sandbox::helper_main(args);
            anyhow::bail!("sandbox: {error}")
        }
        Some(mode) if mode == "serve" => runtime()?.block_on(serve()),
        config => runtime()?.block_on(client(config.map(Into::into))),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// An agent's memory on stdin/stdout (here an in-memory fake agent).
async fn serve() -> anyhow::Result<()> {
    let agent = Arc::new(ScriptedAgent::new().with_memory());
    McpServer::new(agent)
        .serve_stream(tokio::io::stdin(), tokio::io::stdout())
        .await?;
    Ok(())
}

/// The servers of `config` (default: this program's `serve`), their tools,
/// and two calls.
async fn client(config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let workspace = dir.path().to_path_buf();
    let config = match &config {
        Some(path) => McpConfig::load(path)?.with_context(|| format!("no {}", path.display()))?,
        None => McpConfig::parse(
            std::path::Path::new("built-in"),
            &json!({"mcpServers": {"memory": {"command": exe, "args": ["serve"]}}}).to_string(),
            |_| None,
        )?,
    };
    let launcher = Launcher {
        workspace: workspace.clone(),
        homes: workspace.join(".mcp-homes"),
        sandbox: ExecSandbox::Kernel {
            helper: exe.clone(),
            network: false,
        },
        protected: Vec::new(),
        allow_private: false,
    };
    let servers = McpServers::start(config, launcher, Arc::new(|_, _| true));
    for _ in 0..300 {
        let states: Vec<McpServerState> = servers.status().iter().map(|s| s.state).collect();
        if states.iter().all(|s| *s != McpServerState::Starting) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for server in servers.status() {
        println!(
            "{}: {} ({})",
            server.name,
            server.state.name(),
            server.detail.unwrap_or_default()
        );
    }
    for tool in servers.tools() {
        println!("  {}: {}", tool.name, tool.description);
    }
    if servers.tool("memory__memory_store").is_some() {
        let stored = servers
            .call(
                "memory__memory_store",
                json!({"text": "The example ran through MCP"}),
            )
            .await?;
        println!("memory_store → {stored}");
        let found = servers
            .call("memory__memory_search", json!({"query": "example"}))
            .await?;
        println!("memory_search → {found}");
    }
    servers.shutdown().await;
    Ok(())
}

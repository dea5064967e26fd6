//! `ocg mcp`: OCG's memory and chat as a Model Context Protocol server on
//! stdio, for an editor or another assistant; `ocg mcp list`: the MCP
//! servers the agent uses and their tools.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use ocg_agent_lib::AgentClient;
use ocg_agent_lib::mcp::McpServer;
use ocg_core::{Agent, McpServerInfo, McpServerState};

/// What `ocg mcp` does; without a subcommand it serves on stdio.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Serve OCG's memory and chat over MCP on stdin/stdout (the default).
    Serve,
    /// The agent's MCP servers: state, restarts and tools.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Run `command` against the agent on `socket`.
pub async fn run(socket: &Path, command: Option<McpCommand>) -> anyhow::Result<ExitCode> {
    let client = AgentClient::new(socket)?;
    match command.unwrap_or(McpCommand::Serve) {
        McpCommand::Serve => {
            // stdout is the protocol's: nothing else may be written there.
            McpServer::new(Arc::new(client))
                .serve_stream(tokio::io::stdin(), tokio::io::stdout())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::List { json } => {
            let servers = client.mcp_servers().await.with_context(|| {
                format!(
                    "the agent at {} is not reachable (is OCG running? `ocg status`)",
                    socket.display()
                )
            })?;
            if json {
                println!("{:#}", serde_json::to_value(&servers)?);
            } else {
                print!("{}", render(&servers));
            }
            let failing = servers.iter().any(|s| s.state == McpServerState::Failed);
            Ok(if failing {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// One line per server, then its tools indented.
fn render(servers: &[McpServerInfo]) -> String {
    if servers.is_empty() {
        return "no MCP servers (configure them in $OCG_DATA_DIR/mcp.json)\n".into();
    }
    let width = servers.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for server in servers {
        out.push_str(&format!(
            "{:width$}  {:5}  {:8}  {} tools",
            server.name,
            server.transport,
            server.state.name(),
            server.tools.len()
        ));
        if server.restarts > 0 {
            out.push_str(&format!(", {} restarts", server.restarts));
        }
        if let Some(detail) = &server.detail {
            out.push_str(&format!("  ({detail})"));
        }
        out.push('\n');
        for tool in &server.tools {
            out.push_str(&format!("{:width$}    {tool}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_line_names_its_state_and_tools() {
        let servers = vec![McpServerInfo {
            name: "files".into(),
            transport: "stdio".into(),
            state: McpServerState::Failed,
            detail: Some("exited".into()),
            tools: vec!["files__read".into()],
            restarts: 2,
        }];
        let text = render(&servers);
        assert!(text.starts_with("files  stdio  failed    1 tools, 2 restarts  (exited)\n"));
        assert!(text.contains("    files__read\n"));
        assert!(render(&[]).contains("mcp.json"));
    }
}

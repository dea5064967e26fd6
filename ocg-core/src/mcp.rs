//! What an agent reports about the Model Context Protocol servers whose tools
//! it offers: `GET /v1/mcp/servers` on the agent, `ocg mcp list`, the web UI.

use serde::{Deserialize, Serialize};

/// Where an MCP server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpServerState {
    /// Being started or connected; its tools are not offered yet.
    Starting,
    /// Connected; its tools are offered.
    Running,
    /// It failed to start or died; retried with backoff, its tools are not
    /// offered meanwhile.
    Failed,
    /// Turned off in its configuration (`"disabled": true`).
    Disabled,
}

impl McpServerState {
    /// Its name as serialized: `starting`, `running`, `failed`, `disabled`.
    pub fn name(self) -> &'static str {
        match self {
            McpServerState::Starting => "starting",
            McpServerState::Running => "running",
            McpServerState::Failed => "failed",
            McpServerState::Disabled => "disabled",
        }
    }
}

/// One configured MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerInfo {
    /// Its name in `mcp.json`, the prefix of its tools (`<name>__<tool>`).
    pub name: String,
    /// `stdio` or `http`.
    pub transport: String,
    /// Its state.
    pub state: McpServerState,
    /// Why it failed, or what it is (the server's own name and version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The tools offered to the model, by their full names; those the
    /// policy denies are not listed.
    #[serde(default)]
    pub tools: Vec<String>,
    /// How many times it was restarted or reconnected.
    #[serde(default)]
    pub restarts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_named_as_it_is_serialized() {
        for state in [
            McpServerState::Starting,
            McpServerState::Running,
            McpServerState::Failed,
            McpServerState::Disabled,
        ] {
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(serde_json::Value::from(state.name()))
            );
        }
    }
}

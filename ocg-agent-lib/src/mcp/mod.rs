//! The Model Context Protocol, both ways, on the official Rust SDK (`rmcp`).
//!
//! - [`McpServers`] (feature `runtime`): the servers of `mcp.json`
//!   ([`config`]), each kept connected by its own task (restarted with
//!   backoff when it dies), whose tools the [`ToolRegistry`](crate::tools::ToolRegistry)
//!   offers as `<server>__<tool>` beside the built-in ones.
//! - [`McpServer`] (feature `mcp-server`): any [`Agent`](ocg_core::Agent)'s
//!   long-term memory and chat offered to other assistants, over stdio
//!   (`ocg mcp`) or streamable HTTP (the gateway's `/mcp`).
//!
//! See `docs/mcp.md` for the whole picture.

#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
mod connect;
#[cfg(feature = "runtime")]
mod result;
#[cfg(feature = "mcp-server")]
mod serve;
#[cfg(feature = "runtime")]
mod servers;

#[cfg(feature = "runtime")]
pub use config::{InvalidServer, McpConfig, ServerConfig, Transport};
#[cfg(feature = "runtime")]
pub use connect::Launcher;
#[cfg(feature = "mcp-http")]
pub use serve::McpHttpService;
#[cfg(feature = "mcp-server")]
pub use serve::McpServer;
#[cfg(feature = "runtime")]
pub use servers::{McpServers, McpTool};

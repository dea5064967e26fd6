//! # ocg-agent-lib: the agent
//!
//! With the `runtime` feature (default):
//!
//! - [`AgentRuntime`] implements `ocg-core`'s [`Agent`](ocg_core::Agent) in
//!   process: it builds the context of a turn from the session's history
//!   ([`context`]), streams the model's answer through an [`LlmProvider`]
//!   ([`providers`]), runs tool calls through a [`ToolExecutor`], and stores
//!   the whole turn atomically in SQLite ([`sessions`]). Turns of one
//!   session are serialized; different sessions run in parallel.
//! - [`tools`]: the built-in tools (files, `apply_patch`, `exec`, `process`,
//!   `web_fetch`, memory, sessions) inside one [`Workspace`](tools::Workspace),
//!   filtered by a [`ToolPolicy`](tools::ToolPolicy) in a
//!   [`ToolRegistry`](tools::ToolRegistry).
//! - [`memory`]: long-term memory in any [`VectorStore`](ocg_core::VectorStore)
//!   (the embedding service in the binary), recalled before each turn.
//! - [`local`]: the no-account default, a `llama-server` child running a
//!   small local chat model, spoken to as an OpenAI-compatible provider.
//! - [`server`]: the agent's RPC router on a Unix socket (0600), and
//!   optionally on TCP with a token.
//! - [`mcp`]: the tools of Model Context Protocol servers (`mcp.json`);
//!   with the `mcp-server` feature, any agent's memory and chat offered as
//!   an MCP server.
//!
//! With the `client` feature (default): [`AgentClient`], the same
//! [`Agent`](ocg_core::Agent) over the socket: plain HTTP/1.1 + JSON, streamed
//! turns as Server-Sent Events whose payloads are
//! [`ChatEvent`](ocg_core::ChatEvent)s. Debug it with
//! `curl --unix-socket /tmp/ocg-agent.sock http://agent/health`.
//!
//! The gateway depends on this crate with `client` only, so it links neither
//! SQLite nor the providers.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
mod client;
mod error;
#[cfg(any(feature = "client", feature = "runtime"))]
mod event_stream;
#[cfg(any(feature = "client", feature = "runtime"))]
mod sse;

#[cfg(feature = "runtime")]
pub mod context;
#[cfg(feature = "runtime")]
pub mod local;
#[cfg(any(feature = "runtime", feature = "mcp-server"))]
pub mod mcp;
#[cfg(feature = "runtime")]
pub mod memory;
#[cfg(feature = "runtime")]
pub mod providers;
#[cfg(feature = "runtime")]
mod runtime;
#[cfg(feature = "runtime")]
pub mod schedule;
#[cfg(feature = "runtime")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod sessions;
#[cfg(feature = "runtime")]
pub mod settings;
#[cfg(feature = "runtime")]
pub mod tools;

#[cfg(feature = "client")]
pub use client::AgentClient;
#[cfg(feature = "client")]
pub mod terminal;
pub use error::AgentError;
#[cfg(feature = "runtime")]
pub use providers::LlmProvider;
#[cfg(feature = "runtime")]
pub use runtime::{AgentRuntime, RuntimeConfig};
#[cfg(feature = "runtime")]
pub use tools::{NoTools, ToolExecutor, ToolOutput};

#[cfg(all(fuzzing, feature = "runtime"))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(all(any(test, feature = "testing"), feature = "runtime"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

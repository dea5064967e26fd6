//! # ocg-agent-lib: the agent service
//!
//! - [`server`]: the agent's RPC router and its Unix-socket server. The
//!   socket is created mode 0600 (umask set around `bind`, so there is no
//!   window in which others could connect), a live socket at the path makes a
//!   second instance fail with a clear error, a dead one is replaced, and the
//!   file is removed on shutdown.
//! - [`AgentClient`] (feature `client`): `ocg-core`'s [`Agent`](ocg_core::Agent)
//!   over the socket: plain HTTP/1.1 + JSON, streamed turns as Server-Sent
//!   Events whose payloads are [`ChatEvent`](ocg_core::ChatEvent)s. Debug it
//!   with `curl --unix-socket /tmp/ocg-agent.sock http://agent/health`.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
mod client;
mod error;
pub mod server;
#[cfg(feature = "client")]
mod sse;

#[cfg(feature = "client")]
pub use client::AgentClient;
pub use error::AgentError;

//! # ocg-gateway-lib: the front door
//!
//! The gateway serves people and programs over HTTP and WebSocket and takes
//! any `Arc<dyn Agent>` (`ocg-core`'s [`Agent`](ocg_core::Agent)): the agent
//! behind its Unix socket (`AgentClient` from `ocg-agent-lib`) or one running
//! in the same process.
//!
//! - [`router`]: the web UI, the OpenAI-compatible API, WebSocket chat,
//!   sessions, memory, status and webhooks ([`ROUTES`] lists them).
//! - [`auth`]: the UI token (256 bits from the OS, stored 0600), the HttpOnly
//!   login cookie, constant-time comparison, and a per-client limit on failed
//!   attempts.
//! - [`serve`]: binds, refusing non-loopback addresses unless allowed.
//! - [`channels`]: any [`Channel`](ocg_core::Channel) bridged to the agent
//!   (one session per chat, commands, typing, errors as short messages),
//!   and [`telegram`], the reference channel; [`journal`] is their shared
//!   durable record of what arrived and what was sent.
//!
//! The protocol is documented in `docs/gateway.md`.
#![warn(missing_docs)]

pub mod access;
pub mod agents;
pub mod auth;
pub mod channels;
mod cron;
pub mod deliveries;
pub mod discord;
pub mod dispatch;
pub mod email;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod hooks;
pub mod irc;
pub mod journal;
pub mod lease;
mod markup;
pub mod matrix;
mod memory;
mod openai;
mod ratelimit;
mod reconnect;
mod routes;
mod settings;
pub mod slack;
pub mod status;
pub mod telegram;
mod tls;
mod ui;
mod websocket;
pub mod ws;

pub use error::{ApiError, GatewayError};

/// Lock `mutex`, also after a panic elsewhere poisoned it (the data behind
/// the gateway's locks stays consistent: each update is one assignment).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub use hooks::RunState;
pub use routes::{GatewayState, JsonBody, MAX_BODY, ROUTES, router, serve};
pub use settings::{GatewaySettings, HooksSettings};

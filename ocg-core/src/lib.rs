//! # ocg-core: the contracts of OCG
//!
//! OCG is three services and a process manager. This crate is what they agree
//! on, and nothing heavier: the traits each concern is reached through
//! ([`Agent`], [`Embedder`], [`VectorStore`], [`SessionStore`], [`Channel`],
//! [`ProcessSupervisor`]), the wire
//! types that cross process boundaries ([`ChatEvent`], [`Message`],
//! [`HealthReport`], embedding and search shapes), config resolution
//! ([`config`]) and one error type ([`Error`]).
//!
//! It depends on serde, serde_json, thiserror, async-trait and futures-core
//! only, so `cargo add ocg-core` stays a small, fast build. No runtime is
//! assumed: the traits are `async` through `async-trait` and streams are
//! [`futures_core::Stream`]s, so any executor can drive them.
//!
//! Every trait is usable as a trait object (`Arc<dyn Agent>`): a library that
//! talks to another service takes the trait object and the binary wires in the
//! concrete client. The `testing` feature adds in-memory fakes of each trait
//! (`testing`) for tests and for SDK users who want to swap a piece out.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod channel;
mod channel_state;
pub mod config;
mod embedder;
mod embedding;
mod error;
mod health;
pub mod hybrid;
mod job_store;
mod mcp;
mod memory;
pub mod schedule;
mod session_store;
mod supervisor;
mod vector_store;
mod wire;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use agent::{Agent, ChatStream, HistoryEntry, SessionInfo};
pub use channel::{
    Attachment, AttachmentKind, Channel, ChannelCapabilities, ChannelState, ChannelStatus,
    ChatTarget, InboundHandler, IncomingMessage, OutgoingMessage, Sender, SentMessage, TextFormat,
    WebhookRequest, WebhookResponse,
};
pub use channel_state::{ChannelStateStore, Fence};
pub use config::{Config, ConfigError};
pub use embedder::{Embedder, EmbedderInfo};
pub use embedding::{SearchHit, SearchQuery, SearchRequest, VectorItem};
pub use error::{Error, Result, body};
pub use health::{HealthCheck, HealthReport, HealthStatus};
pub use job_store::JobStore;
pub use mcp::{McpServerInfo, McpServerState};
pub use memory::{InvalidMemory, Memory, MemoryPage, NewMemory, StoredMemory, ValidMemory};
pub use session_store::{
    LockHeld, NewMessage, SessionContext, SessionLock, SessionStore, StoreStats,
};
pub use supervisor::{
    ProcessSupervisor, Readiness, RunningService, ServiceSpec, ServiceState, StopOutcome,
};
pub use vector_store::{VectorStore, valid_collection_name};
pub use wire::{ChatEvent, ChatReply, ChatRequest, Message, Role, ToolCall, Usage};

/// The version of the OCG contracts, reported by every service's `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

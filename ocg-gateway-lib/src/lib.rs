//! # ocg-gateway-lib: the front door
//!
//! The gateway serves people and programs over HTTP and takes any
//! `Arc<dyn Agent>` (`ocg-core`'s [`Agent`](ocg_core::Agent)): the agent
//! behind its Unix socket (`AgentClient` from `ocg-agent-lib`) or one running
//! in the same process. [`router`] builds the routes; [`serve`] binds them,
//! refusing non-loopback addresses unless explicitly allowed.
#![warn(missing_docs)]

mod error;
mod routes;

pub use error::GatewayError;
pub use routes::{GatewayState, router, serve};

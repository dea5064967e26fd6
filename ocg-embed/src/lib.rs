//! # ocg-embed: the embedding service and its client
//!
//! - [`service`]: the embedding service's HTTP router and server. It binds
//!   the first free port of a range and announces its base URL in a file, so
//!   `ocg` and the agent find it without a fixed port.
//! - [`EmbeddingClient`] (feature `client`): `ocg-core`'s
//!   [`Embedder`](ocg_core::Embedder) over the service's HTTP API, for the
//!   agent. It follows the announced address, so it survives the service
//!   restarting on another port.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod announce;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
mod client;
mod error;
pub mod service;

pub use announce::{AddressFile, EmbeddingEndpoint};
#[cfg(feature = "client")]
pub use client::EmbeddingClient;
pub use error::EmbedError;

//! # ocg-embed: the embedding service and its client
//!
//! - [`service`]: the embedding service's HTTP router and server. It binds
//!   the first free port of a range and announces its base URL in a file, so
//!   `ocg` and the agent find it without a fixed port.
//! - [`EmbeddingClient`] (feature `client`): `ocg-core`'s
//!   [`Embedder`](ocg_core::Embedder) over the service's HTTP API, for the
//!   agent. It follows the announced address, so it survives the service
//!   restarting on another port.
//! - Feature `server` (the `ocg-embedding` binary): [`llama::LlamaEmbedder`]
//!   supervises llama.cpp's `llama-server` and embeds through it;
//!   [`store::CollectionStore`] keeps collections in SQLite (the source of
//!   truth) and searches them with FAISS ([`index`]); [`api`] is the HTTP
//!   API over both. FAISS is linked as shared libraries, one per SIMD level
//!   (`scripts/setup-faiss.sh` builds them; `build.rs` finds them), so the
//!   agent, using only `client`, never links it.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod announce;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod api;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
mod client;
#[cfg(feature = "client")]
mod client_store;
mod error;
#[cfg(feature = "export")]
#[cfg_attr(docsrs, doc(cfg(feature = "export")))]
pub mod export;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use ocg_core::hybrid;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod index;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod llama;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod service;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod settings;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod snapshots;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod store;

pub use announce::{AddressFile, EmbeddingEndpoint};
#[cfg(feature = "client")]
pub use client::EmbeddingClient;
pub use error::EmbedError;

/// The config key of the token every caller of the service sends as
/// `Authorization: Bearer <token>` (all routes but `/health`).
pub const TOKEN_KEY: &str = "OCG_EMBEDDING_TOKEN";

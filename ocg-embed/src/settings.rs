//! Typed settings of the embedding service, from the resolved [`Config`].

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ocg_core::config::{Config, ConfigError, RawConfig};

use crate::index::HnswParams;
use crate::llama::LlamaConfig;

/// Limits on what one request may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Texts per `/embed` call and items per upsert (`OCG_EMBED_MAX_BATCH`).
    pub max_batch: usize,
    /// Request body size in bytes (`OCG_EMBED_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest `top_k` of a search (`OCG_EMBED_MAX_TOP_K`).
    pub max_top_k: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 256,
            max_body_bytes: 16 << 20,
            max_top_k: 1000,
        }
    }
}

/// Everything the embedding service needs to run.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `llama-server` and the model.
    pub llama: LlamaConfig,
    /// The SQLite database (`$OCG_DATA_DIR/embeddings.db`).
    pub database: PathBuf,
    /// Index snapshots (`$OCG_DATA_DIR/indexes`).
    pub index_dir: PathBuf,
    /// Exact search below, HNSW from this collection size on.
    pub hnsw: HnswParams,
    /// Request limits.
    pub limits: Limits,
    /// How often dirty indexes are written (`OCG_INDEX_SNAPSHOT_SECS`).
    pub snapshot_every: Duration,
}

fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    raw: &RawConfig,
    key: &str,
    range: RangeInclusive<T>,
    default: T,
) -> Result<T, ConfigError> {
    Ok(raw.number_in(key, range)?.unwrap_or(default))
}

impl ServiceSettings {
    /// Settings from the resolved config; a malformed value names its key.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let raw = config.raw();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        let threads = number(raw, "OCG_LLAMA_THREADS", 1u32..=256, cores.min(4))?;
        let max_tokens = number(raw, "OCG_EMBED_MAX_TOKENS", 16u32..=65536, 512)?;
        let slots = number(raw, "OCG_EMBED_SLOTS", 1u32..=64, 4)?;
        let llama = LlamaConfig {
            program: config.llama_server_bin.clone(),
            model: config.embedding_model_path.clone(),
            ports: match config.llama_port {
                Some(port) => port..=port,
                None => 18000..=19000,
            },
            threads,
            slots,
            max_tokens: max_tokens as usize,
            log_file: config.log_dir.join("ocg-llama-embedding.log"),
            startup_timeout: Duration::from_secs(config.start_timeout_secs.max(30)),
        };
        let defaults = HnswParams::default();
        let hnsw = HnswParams {
            threshold: number(
                raw,
                "OCG_HNSW_THRESHOLD",
                1usize..=usize::MAX,
                defaults.threshold,
            )?,
            m: number(raw, "OCG_HNSW_M", 4u32..=256, defaults.m)?,
            ef_construction: number(
                raw,
                "OCG_HNSW_EF_CONSTRUCTION",
                8u32..=4096,
                defaults.ef_construction,
            )?,
            ef_search: number(raw, "OCG_HNSW_EF_SEARCH", 8u32..=4096, defaults.ef_search)?,
            tombstone_share: defaults.tombstone_share,
        };
        let limit_defaults = Limits::default();
        let limits = Limits {
            max_batch: number(
                raw,
                "OCG_EMBED_MAX_BATCH",
                1usize..=100_000,
                limit_defaults.max_batch,
            )?,
            max_body_bytes: number(
                raw,
                "OCG_EMBED_MAX_BODY_BYTES",
                1024usize..=(1 << 30),
                limit_defaults.max_body_bytes,
            )?,
            max_top_k: number(
                raw,
                "OCG_EMBED_MAX_TOP_K",
                1usize..=100_000,
                limit_defaults.max_top_k,
            )?,
        };
        Ok(ServiceSettings {
            llama,
            database: config.data_dir.join("embeddings.db"),
            index_dir: config.data_dir.join("indexes"),
            hnsw,
            limits,
            snapshot_every: Duration::from_secs(number(
                raw,
                "OCG_INDEX_SNAPSHOT_SECS",
                1u64..=86400,
                60,
            )?),
        })
    }
}

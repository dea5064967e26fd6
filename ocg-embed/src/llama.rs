//! [`LlamaEmbedder`]: embeddings from a supervised llama.cpp `llama-server`.
//!
//! The server runs as a [`SupervisedChild`] of this process (killed with it,
//! restarted with backoff, reported as crashing after repeated quick
//! crashes, retried with `--no-repack` after a `SIGILL`) with
//! `--embeddings --pooling mean` on a free port of 18000–19000 (or
//! `LLAMA_PORT`). A non-causal model must
//! see each input in one micro-batch, so `-b`/`-ub` are the longest input in
//! tokens ([`LlamaConfig::max_tokens`]) and `-np` slots of that size let a
//! batch of short texts run together. While it is not ready, embedding calls fail
//! with a clear `embedder_unavailable`.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ocg_core::{Embedder, EmbedderInfo, Error, Result};
use ocg_process::RestartPolicy;
use ocg_process::supervised::{
    ChildState, Fallback, PORT, ReadyCheck, SupervisedChild, SupervisedSpec,
};
use serde::{Deserialize, Serialize};

/// How to run `llama-server` for embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaConfig {
    /// The `llama-server` program (`LLAMA_SERVER_BIN`).
    pub program: Option<PathBuf>,
    /// The GGUF embedding model (`EMBEDDING_MODEL_PATH`).
    pub model: Option<PathBuf>,
    /// Ports to try, first free wins (`LLAMA_PORT` pins one).
    pub ports: RangeInclusive<u16>,
    /// CPU threads (`OCG_LLAMA_THREADS`).
    pub threads: u32,
    /// Parallel sequences (`OCG_EMBED_SLOTS`).
    pub slots: u32,
    /// Longest input in tokens (`OCG_EMBED_MAX_TOKENS`).
    pub max_tokens: usize,
    /// Where `llama-server` logs.
    pub log_file: PathBuf,
    /// How long loading may take.
    pub startup_timeout: Duration,
}

/// The child's state, as `/health` and `/info` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LlamaStatus {
    /// Not configured or cannot start; the message says what to do.
    Failed {
        /// Why.
        message: String,
    },
    /// Loading (first start or restart).
    Starting {
        /// Restarts so far.
        restarts: u32,
    },
    /// Answering.
    Ready {
        /// The child's pid.
        pid: u32,
        /// Its port.
        port: u16,
        /// Model name.
        model: String,
        /// Vector length.
        dimension: usize,
        /// Restarts so far.
        restarts: u32,
    },
}

/// An [`Embedder`] backed by a supervised `llama-server`.
#[derive(Debug, Clone)]
pub struct LlamaEmbedder {
    child: SupervisedChild,
    /// Vector length, learnt from a probe embedding at each start.
    dimension: Arc<AtomicUsize>,
    http: reqwest::Client,
    max_tokens: usize,
    model: String,
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    input: &'a [String],
    model: &'a str,
}

#[derive(Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingDatum>,
}

#[derive(Deserialize)]
struct EmbeddingDatum {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct TokenizeAnswer {
    tokens: Vec<serde_json::Value>,
}

impl LlamaEmbedder {
    /// Start supervising `llama-server` in the background (needs a tokio
    /// runtime). A missing program or model is reported by
    /// [`status`](Self::status), `check` and every embedding call.
    pub fn start(config: LlamaConfig) -> Self {
        let model = config
            .model
            .as_ref()
            .and_then(|p| p.file_stem())
            .map_or_else(|| "none".to_owned(), |s| s.to_string_lossy().into_owned());
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        let dimension = Arc::new(AtomicUsize::new(0));
        let spec = spec(&config);
        let child = match missing(&config) {
            Some(message) => SupervisedChild::unavailable(&spec.name, message),
            None => {
                let probe = dimension_probe(http.clone(), model.clone(), dimension.clone());
                SupervisedChild::start(spec, Some(probe))
            }
        };
        LlamaEmbedder {
            child,
            dimension,
            http,
            max_tokens: config.max_tokens,
            model,
        }
    }

    /// The child's state now.
    pub fn status(&self) -> LlamaStatus {
        match self.child.state() {
            ChildState::Ready {
                pid,
                port,
                restarts,
            } => LlamaStatus::Ready {
                pid,
                port,
                model: self.model.clone(),
                dimension: self.dimension.load(Ordering::Relaxed),
                restarts,
            },
            ChildState::Starting { restarts, .. } => LlamaStatus::Starting { restarts },
            failed @ (ChildState::CrashLoop { .. } | ChildState::Unavailable { .. }) => {
                LlamaStatus::Failed {
                    message: failed.problem(self.child.name()).unwrap_or_default(),
                }
            }
        }
    }

    /// Wait until the server is ready, cannot start (not configured, or
    /// crashing), or `timeout` passes; whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        matches!(
            self.child.wait_settled(timeout).await,
            ChildState::Ready { .. }
        )
    }

    fn base(&self) -> Result<(String, String, usize)> {
        match self.status() {
            LlamaStatus::Ready {
                port,
                model,
                dimension,
                ..
            } => Ok((format!("http://127.0.0.1:{port}"), model, dimension)),
            LlamaStatus::Starting { .. } => Err(Error::unavailable(
                "llama-server",
                "the embedding model is loading; try again in a moment",
            )),
            LlamaStatus::Failed { message } => Err(Error::unavailable("llama-server", message)),
        }
    }

    async fn token_count(&self, base: &str, text: &str) -> Result<usize> {
        let answer: TokenizeAnswer = self
            .http
            .post(format!("{base}/tokenize"))
            .json(&serde_json::json!({ "content": text, "add_special": true }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::unavailable("llama-server", e.to_string()))?
            .json()
            .await
            .map_err(|e| Error::unavailable("llama-server", e.to_string()))?;
        Ok(answer.tokens.len())
    }
}

/// `POST /v1/embeddings` to the llama-server at `base`; unit vectors in the
/// order of `texts`.
async fn raw_embed(
    http: &reqwest::Client,
    max_tokens: usize,
    base: &str,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>> {
    let response = http
        .post(format!("{base}/v1/embeddings"))
        .json(&EmbeddingsRequest {
            input: texts,
            model,
        })
        .send()
        .await
        .map_err(|e| Error::unavailable("llama-server", e.to_string()))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::unavailable("llama-server", e.to_string()))?;
    if !status.is_success() {
        let body = String::from_utf8_lossy(&bytes);
        if body.contains("too large") {
            return Err(Error::Remote {
                code: "input_too_long".into(),
                message: format!(
                    "a text is longer than the model's {max_tokens} tokens (split it)"
                ),
            });
        }
        return Err(Error::unavailable(
            "llama-server",
            format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        ));
    }
    let mut answer: EmbeddingsAnswer = serde_json::from_slice(&bytes)
        .map_err(|e| Error::unavailable("llama-server", format!("unexpected answer: {e}")))?;
    answer.data.sort_by_key(|d| d.index);
    if answer.data.len() != texts.len() {
        return Err(Error::unavailable(
            "llama-server",
            format!("{} vectors for {} texts", answer.data.len(), texts.len()),
        ));
    }
    Ok(answer
        .data
        .into_iter()
        .map(|d| {
            let mut v = d.embedding;
            crate::index::normalize(&mut v);
            v
        })
        .collect())
}

fn missing(config: &LlamaConfig) -> Option<String> {
    let Some(program) = &config.program else {
        return Some(
            "LLAMA_SERVER_BIN is not set: run scripts/setup-llama.sh or point it at llama-server"
                .into(),
        );
    };
    let Some(model) = &config.model else {
        return Some("EMBEDDING_MODEL_PATH is not set: run scripts/setup-llama.sh or point it at a GGUF embedding model".into());
    };
    [
        (program, "llama-server", "LLAMA_SERVER_BIN"),
        (model, "the embedding model", "EMBEDDING_MODEL_PATH"),
    ]
    .into_iter()
    .find(|(path, _, _)| !path.is_file())
    .map(|(path, what, key)| {
        format!(
            "{what} not found at {}: run scripts/setup-llama.sh or set {key}",
            path.display()
        )
    })
}

fn spec(config: &LlamaConfig) -> SupervisedSpec {
    let tokens = config.max_tokens.to_string();
    let model_path = config.model.clone().unwrap_or_default();
    SupervisedSpec {
        name: "llama-server (embedding)".into(),
        program: config.program.clone().unwrap_or_default(),
        args: [
            "-m",
            &model_path.display().to_string(),
            "--embeddings",
            "--pooling",
            "mean",
            "--host",
            "127.0.0.1",
            "--port",
            PORT,
            "-c",
            &(config.max_tokens * config.slots as usize).to_string(),
            "-np",
            &config.slots.to_string(),
            "-b",
            &tokens,
            "-ub",
            &tokens,
            "-t",
            &config.threads.to_string(),
            "--no-webui",
        ]
        .map(str::to_owned)
        .to_vec(),
        ports: config.ports.clone(),
        health_path: "/health".into(),
        log_file: config.log_file.clone(),
        startup_timeout: config.startup_timeout,
        policy: RestartPolicy::default(),
        fallbacks: vec![Fallback {
            args: vec!["--no-repack".into()],
            reason: "ggml's repacked and AMX matrix kernels off".into(),
        }],
    }
}

/// The readiness check: a server that answers `/health` but cannot embed is
/// not ready. It also learns the vector length.
fn dimension_probe(
    http: reqwest::Client,
    model: String,
    dimension: Arc<AtomicUsize>,
) -> ReadyCheck {
    Arc::new(move |port| {
        let (http, model, dimension) = (http.clone(), model.clone(), dimension.clone());
        Box::pin(async move {
            let base = format!("http://127.0.0.1:{port}");
            let vectors = raw_embed(
                &http,
                usize::MAX,
                &base,
                &model,
                &["dimension probe".to_owned()],
            )
            .await
            .map_err(|e| format!("llama-server does not embed: {e}"))?;
            let length = vectors.first().map_or(0, Vec::len);
            if length == 0 {
                return Err("llama-server returned an empty vector".into());
            }
            dimension.store(length, Ordering::Relaxed);
            tracing::info!(model = %model, dimension = length, "embedding model ready");
            Ok(())
        })
    })
}

#[async_trait]
impl Embedder for LlamaEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no texts to embed".into()));
        }
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::InvalidInput(format!("text {index} is empty")));
        }
        let (base, model, _) = self.base()?;
        // WordPiece and BPE tokens cover at least one character, so only
        // texts longer than the limit in characters need counting.
        for (index, text) in texts.iter().enumerate() {
            if text.chars().count() + 2 > self.max_tokens {
                let tokens = self.token_count(&base, text).await?;
                if tokens > self.max_tokens {
                    return Err(Error::Remote {
                        code: "input_too_long".into(),
                        message: format!(
                            "text {index} is {tokens} tokens long; the model takes at most {} (split it)",
                            self.max_tokens
                        ),
                    });
                }
            }
        }
        raw_embed(&self.http, self.max_tokens, &base, &model, texts).await
    }

    async fn info(&self) -> Result<EmbedderInfo> {
        let (_, model, dimension) = self.base()?;
        Ok(EmbedderInfo { model, dimension })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_model_is_reported_with_what_to_do() {
        let embedder = LlamaEmbedder::start(LlamaConfig {
            program: Some("/bin/sh".into()),
            model: None,
            ports: 18000..=19000,
            threads: 1,
            slots: 1,
            max_tokens: 512,
            log_file: std::env::temp_dir().join("ocg-test-llama-embed.log"),
            startup_timeout: Duration::from_secs(1),
        });
        assert!(!embedder.wait_ready(Duration::from_secs(1)).await);
        let error = embedder.embed(&["hello".into()]).await.unwrap_err();
        assert_eq!(error.code(), "unavailable");
        assert!(
            error.to_string().contains("EMBEDDING_MODEL_PATH"),
            "{error}"
        );
        let error = embedder.embed(&[" ".into()]).await.unwrap_err();
        assert_eq!(error.code(), "invalid_input");
    }
}

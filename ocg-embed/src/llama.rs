//! [`LlamaEmbedder`]: embeddings from a supervised llama.cpp `llama-server`.
//!
//! The server runs as this process's child (same process group, killed with
//! it, see `ocg_process::child`) with `--embeddings --pooling mean` on the
//! first free port of 18000–19000 (or `LLAMA_PORT`). A non-causal model must
//! see each input in one micro-batch, so `-b`/`-ub` are the longest input in
//! tokens ([`LlamaConfig::max_tokens`]) and `-np` slots of that size let a
//! batch of short texts run together. If the child dies it is restarted with
//! exponential backoff (0.5 s doubling to 30 s, reset after a minute of good
//! running); meanwhile embedding calls fail with a clear `embedder_unavailable`.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ocg_core::{Embedder, EmbedderInfo, Error, Result};
use ocg_process::child::{ChildSpec, spawn_child, wait_http_ready};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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

#[derive(Debug)]
struct Shared {
    status: RwLock<LlamaStatus>,
    ready: watch::Sender<bool>,
    /// False when program or model is missing: nothing will ever start.
    configured: bool,
}

impl Shared {
    fn set(&self, status: LlamaStatus) {
        let ready = matches!(status, LlamaStatus::Ready { .. });
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = status;
        self.ready.send_replace(ready);
    }

    fn get(&self) -> LlamaStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// An [`Embedder`] backed by a supervised `llama-server`.
#[derive(Debug, Clone)]
pub struct LlamaEmbedder {
    shared: Arc<Shared>,
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
        let (ready, _) = watch::channel(false);
        let missing = missing(&config);
        let shared = Arc::new(Shared {
            status: RwLock::new(LlamaStatus::Starting { restarts: 0 }),
            ready,
            configured: missing.is_none(),
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        let embedder = LlamaEmbedder {
            shared: shared.clone(),
            http,
            max_tokens: config.max_tokens,
            model,
        };
        match missing {
            Some(message) => shared.set(LlamaStatus::Failed { message }),
            None => {
                tokio::spawn(supervise(config, embedder.clone()));
            }
        }
        embedder
    }

    /// The child's state now.
    pub fn status(&self) -> LlamaStatus {
        self.shared.get()
    }

    /// Wait until the server is ready, cannot ever start (not configured),
    /// or `timeout` passes; whether it is ready. A failed start that will be
    /// retried (say, a port taken in the meantime) is waited out.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut ready = self.shared.ready.subscribe();
        let wait = async {
            loop {
                if *ready.borrow_and_update() {
                    return true;
                }
                if !self.shared.configured {
                    return false;
                }
                if ready.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
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

    async fn raw_embed(&self, base: &str, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let response = self
            .http
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
                        "a text is longer than the model's {} tokens (split it)",
                        self.max_tokens
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

/// A port of `ports` free now. The scan starts at an offset taken from the
/// pid and the clock rather than at the first port, so services starting
/// together (tests, the agent's chat model) rarely race for the same one; a
/// lost race only costs a restart.
fn free_port(ports: &RangeInclusive<u16>) -> Option<u16> {
    let (first, last) = (*ports.start(), *ports.end());
    if last < first {
        return None;
    }
    let span = u32::from(last - first) + 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let offset = (std::process::id() ^ nanos) % span;
    (0..span)
        .map(|i| first + ((offset + i) % span) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

async fn supervise(config: LlamaConfig, embedder: LlamaEmbedder) {
    let shared = embedder.shared.clone();
    let mut delay = Duration::from_millis(500);
    let mut restarts = 0u32;
    loop {
        shared.set(LlamaStatus::Starting { restarts });
        let Some(port) = free_port(&config.ports) else {
            shared.set(LlamaStatus::Failed {
                message: format!("no free port for llama-server in {:?}", config.ports),
            });
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let tokens = config.max_tokens.to_string();
        let model_path = config.model.clone().unwrap_or_default();
        let spec = ChildSpec {
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
                &port.to_string(),
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
            log_file: config.log_file.clone(),
        };
        if let Some(dir) = config.log_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let started = Instant::now();
        let mut child = match spawn_child(&spec) {
            Ok(child) => child,
            Err(error) => {
                tracing::warn!(%error, "llama-server (embedding) did not start; retrying in {delay:?}");
                shared.set(LlamaStatus::Failed {
                    message: error.to_string(),
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                restarts += 1;
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        let base = format!("http://127.0.0.1:{port}");
        match wait_http_ready(
            &spec.name,
            &format!("{base}/health"),
            &mut child,
            config.startup_timeout,
        )
        .await
        {
            Ok(()) => match embedder
                .raw_embed(&base, &embedder.model, &["dimension probe".to_owned()])
                .await
            {
                Ok(vectors) => {
                    let dimension = vectors.first().map_or(0, Vec::len);
                    tracing::info!(
                        pid,
                        port,
                        model = %embedder.model,
                        dimension,
                        secs = started.elapsed().as_secs_f32(),
                        "embedding model ready"
                    );
                    shared.set(LlamaStatus::Ready {
                        pid,
                        port,
                        model: embedder.model.clone(),
                        dimension,
                        restarts,
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "llama-server (embedding) answers but does not embed");
                    shared.set(LlamaStatus::Failed {
                        message: format!("llama-server does not embed: {error}"),
                    });
                    let _ = child.start_kill();
                }
            },
            Err(error) => {
                tracing::warn!(%error, "llama-server (embedding) did not become ready");
                shared.set(LlamaStatus::Failed {
                    message: error.to_string(),
                });
                let _ = child.start_kill();
            }
        }
        let status = child.wait().await;
        if started.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        restarts += 1;
        tracing::warn!(
            ?status,
            restarts,
            "llama-server (embedding) exited; restarting in {delay:?}"
        );
        if !matches!(shared.get(), LlamaStatus::Failed { .. }) {
            shared.set(LlamaStatus::Starting { restarts });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
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
        self.raw_embed(&base, &model, texts).await
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

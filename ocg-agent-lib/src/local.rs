//! The no-account default: a local `llama-server` running a small chat model.
//!
//! [`LocalModel`] starts `llama-server` as a child of the agent (same process
//! group, dies with the agent), waits for its `/health`, and then answers as
//! an OpenAI-compatible provider on `http://127.0.0.1:<port>/v1`. If the
//! child dies it is restarted with backoff, on a port that is free then.
//! While it loads, [`LlmProvider::check`] reports so and turns fail with a
//! clear `llm_unavailable` error instead of hanging.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use ocg_process::child::{ChildSpec, first_free_port, spawn_child, wait_http_ready};

use crate::providers::openai::{OpenAiConfig, OpenAiProvider};
use crate::providers::{CompletionRequest, LlmProvider, ProviderError, ProviderStream};

/// How to run the local model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelConfig {
    /// The `llama-server` program.
    pub llama_server: PathBuf,
    /// The GGUF chat model.
    pub model_path: PathBuf,
    /// Ports to try for `llama-server`, first free wins.
    pub ports: RangeInclusive<u16>,
    /// Context size passed to `llama-server` (`-c`).
    pub context: u32,
    /// CPU threads (`-t`).
    pub threads: u32,
    /// Where `llama-server` logs.
    pub log_file: PathBuf,
    /// How long loading may take.
    pub startup_timeout: Duration,
}

#[derive(Debug, Clone)]
enum State {
    Starting,
    Ready(Arc<OpenAiProvider>),
    Failed(String),
}

/// An [`LlmProvider`] backed by a supervised local `llama-server`.
#[derive(Debug, Clone)]
pub struct LocalModel {
    state: Arc<RwLock<State>>,
    model: String,
}

impl LocalModel {
    /// Start supervising `llama-server` in the background (needs a tokio
    /// runtime). A missing program or model is reported by
    /// [`check`](LlmProvider::check) and by every turn, with what to do.
    pub fn start(config: LocalModelConfig) -> Self {
        let model = config
            .model_path
            .file_stem()
            .map_or_else(|| "local".to_owned(), |s| s.to_string_lossy().into_owned());
        let state = Arc::new(RwLock::new(State::Starting));
        let missing = [
            (&config.llama_server, "llama-server", "LLAMA_SERVER_BIN"),
            (&config.model_path, "the chat model", "OCG_CHAT_MODEL_PATH"),
        ]
        .into_iter()
        .find(|(path, _, _)| !path.is_file());
        if let Some((path, what, key)) = missing {
            let message = format!(
                "{what} not found at {}: run scripts/setup-llama.sh, set {key}, or configure OPENAI_API_KEY / ANTHROPIC_API_KEY",
                path.display()
            );
            *state.write().unwrap_or_else(|p| p.into_inner()) = State::Failed(message);
        } else {
            tokio::spawn(supervise(config, state.clone(), model.clone()));
        }
        LocalModel { state, model }
    }

    fn current(&self) -> State {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn supervise(config: LocalModelConfig, state: Arc<RwLock<State>>, model: String) {
    let set = |new: State| *state.write().unwrap_or_else(|p| p.into_inner()) = new;
    let mut delay = Duration::from_millis(500);
    loop {
        set(State::Starting);
        let Some(port) = first_free_port(config.ports.clone()) else {
            set(State::Failed(format!("no free port in {:?}", config.ports)));
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let spec = ChildSpec {
            name: "llama-server (chat)".into(),
            program: config.llama_server.clone(),
            args: [
                "-m",
                &config.model_path.display().to_string(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-c",
                &config.context.to_string(),
                "-t",
                &config.threads.to_string(),
                "--no-webui",
            ]
            .map(str::to_owned)
            .to_vec(),
            log_file: config.log_file.clone(),
        };
        let started = std::time::Instant::now();
        let mut child = match spawn_child(&spec) {
            Ok(child) => child,
            Err(error) => {
                set(State::Failed(error.to_string()));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        match wait_http_ready(
            &spec.name,
            &format!("{base}/health"),
            &mut child,
            config.startup_timeout,
        )
        .await
        {
            Ok(()) => {
                let provider = OpenAiProvider::new(OpenAiConfig {
                    name: "local".into(),
                    base_url: format!("{base}/v1"),
                    api_key: None,
                    model: model.clone(),
                    timeout: Duration::from_secs(300),
                });
                match provider {
                    Ok(provider) => {
                        tracing::info!(port, model = %model, secs = started.elapsed().as_secs_f32(), "local model ready");
                        set(State::Ready(Arc::new(provider)));
                    }
                    Err(error) => set(State::Failed(error.to_string())),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "local model did not start");
                set(State::Failed(error.to_string()));
            }
        }
        let status = child.wait().await;
        let ran = started.elapsed();
        tracing::warn!(
            ?status,
            "llama-server (chat) exited; restarting in {delay:?}"
        );
        if ran > Duration::from_secs(60) {
            delay = Duration::from_millis(500);
        }
        set(State::Starting);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[async_trait]
impl LlmProvider for LocalModel {
    fn name(&self) -> &str {
        "local"
    }

    fn model(&self) -> &str {
        &self.model
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        match self.current() {
            State::Ready(provider) => provider.stream(request).await,
            State::Starting => Err(ProviderError::Connect {
                provider: "local".into(),
                message: "the local model is still loading; try again in a moment".into(),
            }),
            State::Failed(message) => Err(ProviderError::Connect {
                provider: "local".into(),
                message,
            }),
        }
    }

    async fn check(&self) -> Result<(), String> {
        match self.current() {
            State::Ready(_) => Ok(()),
            State::Starting => Err("the local model is loading".into()),
            State::Failed(message) => Err(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_program_is_reported_with_what_to_do() {
        let model = LocalModel::start(LocalModelConfig {
            llama_server: "/nonexistent/llama-server".into(),
            model_path: "/nonexistent/smollm2.gguf".into(),
            ports: 18000..=19000,
            context: 2048,
            threads: 2,
            log_file: std::env::temp_dir().join("ocg-test-llama.log"),
            startup_timeout: Duration::from_secs(1),
        });
        let why = model.check().await.unwrap_err();
        assert!(
            why.contains("llama-server not found") && why.contains("LLAMA_SERVER_BIN"),
            "{why}"
        );
        let error = model
            .stream(&CompletionRequest::default())
            .await
            .err()
            .unwrap();
        assert_eq!(error.code(), "llm_unavailable");
        assert_eq!(model.model(), "smollm2");
    }
}

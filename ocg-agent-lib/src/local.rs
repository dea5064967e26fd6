//! The no-account default: a local `llama-server` running a small chat model.
//!
//! [`LocalModel`] runs `llama-server` as a [`SupervisedChild`] of the agent
//! (killed with it, restarted with backoff, reported as crashing after
//! repeated quick crashes) and answers as an OpenAI-compatible provider on
//! `http://127.0.0.1:<port>/v1`. A turn that arrives while the model loads
//! waits for it (at most [`LocalModelConfig::startup_timeout`]), so the first
//! question after `ocg start` is answered rather than refused.
//!
//! If `llama-server` dies of `SIGILL` (a CPU path ggml chose that this
//! machine cannot run: its AMX kernels crash on some virtual machines), it is
//! restarted at once with `--no-repack`, which turns ggml's repacked and AMX
//! matrix kernels off.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ocg_process::RestartPolicy;
use ocg_process::supervised::{ChildState, Fallback, PORT, SupervisedChild, SupervisedSpec};

use crate::providers::openai::{OpenAiConfig, OpenAiProvider};
use crate::providers::{CompletionRequest, LlmProvider, NotReady, ProviderError, ProviderStream};

/// The sampling the local model uses when a request sets none, passed to
/// `llama-server` as its defaults (a request's own `temperature` wins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// `--temp`.
    pub temperature: f32,
    /// `--top-k`.
    pub top_k: u32,
    /// `--top-p`.
    pub top_p: f32,
    /// `--min-p`.
    pub min_p: f32,
    /// `--repeat-penalty`.
    pub repeat_penalty: f32,
}

impl Default for Sampling {
    /// Chosen by the evaluation in `docs/agent.md`: small models answer
    /// simple questions right near-greedily and ramble at llama-server's
    /// default temperature of 0.8.
    fn default() -> Self {
        Sampling {
            temperature: 0.2,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.05,
            repeat_penalty: 1.1,
        }
    }
}

impl Sampling {
    fn args(&self) -> Vec<String> {
        [
            ("--temp", self.temperature.to_string()),
            ("--top-k", self.top_k.to_string()),
            ("--top-p", self.top_p.to_string()),
            ("--min-p", self.min_p.to_string()),
            ("--repeat-penalty", self.repeat_penalty.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// How to run the local model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModelConfig {
    /// The `llama-server` program.
    pub llama_server: PathBuf,
    /// The GGUF chat model.
    pub model_path: PathBuf,
    /// Ports to try for `llama-server`.
    pub ports: RangeInclusive<u16>,
    /// Context size passed to `llama-server` (`-c`).
    pub context: u32,
    /// CPU threads (`-t`).
    pub threads: u32,
    /// Default sampling.
    pub sampling: Sampling,
    /// Where `llama-server` logs.
    pub log_file: PathBuf,
    /// How long loading may take; also how long a turn waits for it.
    pub startup_timeout: Duration,
}

impl LocalModelConfig {
    fn spec(&self) -> SupervisedSpec {
        let mut args: Vec<String> = [
            "-m",
            &self.model_path.display().to_string(),
            "--host",
            "127.0.0.1",
            "--port",
            PORT,
            "-c",
            &self.context.to_string(),
            "-t",
            &self.threads.to_string(),
            // Threads sleep instead of spinning between tokens: no slower on
            // an idle machine (26 tok/s either way on 2 cores), and many
            // times faster when the cores are shared (0.4 against 8 tok/s
            // beside a build).
            "--poll",
            "0",
            "--no-webui",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(self.sampling.args());
        SupervisedSpec {
            name: "llama-server (chat)".into(),
            program: self.llama_server.clone(),
            args,
            ports: self.ports.clone(),
            health_path: "/health".into(),
            log_file: self.log_file.clone(),
            startup_timeout: self.startup_timeout,
            policy: RestartPolicy::default(),
            fallbacks: vec![Fallback {
                args: vec!["--no-repack".into()],
                reason: "ggml's repacked and AMX matrix kernels off".into(),
            }],
        }
    }
}

/// The provider for the port the child answers on, built once per port.
type PortProvider = Arc<Mutex<Option<(u16, Arc<OpenAiProvider>)>>>;

/// An [`LlmProvider`] backed by a supervised local `llama-server`.
#[derive(Debug, Clone)]
pub struct LocalModel {
    child: SupervisedChild,
    provider: PortProvider,
    model: String,
    wait: Duration,
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
        let missing = [
            (&config.llama_server, "llama-server", "LLAMA_SERVER_BIN"),
            (&config.model_path, "the chat model", "OCG_CHAT_MODEL_PATH"),
        ]
        .into_iter()
        .find(|(path, _, _)| !path.is_file());
        let spec = config.spec();
        let child = match missing {
            Some((path, what, key)) => SupervisedChild::unavailable(
                &spec.name,
                format!(
                    "{what} not found at {}: run scripts/setup-llama.sh, set {key}, or configure OPENAI_API_KEY / ANTHROPIC_API_KEY",
                    path.display()
                ),
            ),
            None => SupervisedChild::start(spec, None),
        };
        LocalModel {
            child,
            provider: Arc::default(),
            model,
            wait: config.startup_timeout,
        }
    }

    /// The provider when the child is `state`, else why not.
    fn provider(&self, state: &ChildState) -> Result<Arc<OpenAiProvider>, NotReady> {
        let problem = || state.problem(self.child.name()).unwrap_or_default();
        let port = match state {
            ChildState::Ready { port, .. } => *port,
            ChildState::Starting { .. } => return Err(NotReady::Loading(problem())),
            ChildState::CrashLoop { .. } | ChildState::Unavailable { .. } => {
                return Err(NotReady::Failing(problem()));
            }
        };
        let mut cache = self.provider.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, provider)) = &*cache {
            if *cached == port {
                return Ok(provider.clone());
            }
        }
        let provider = OpenAiProvider::new(OpenAiConfig {
            name: "local".into(),
            base_url: format!("http://127.0.0.1:{port}/v1"),
            api_key: None,
            model: self.model.clone(),
            timeout: Duration::from_secs(300),
        })
        .map(Arc::new)
        .map_err(|e| NotReady::Failing(e.to_string()))?;
        *cache = Some((port, provider.clone()));
        Ok(provider)
    }
}

fn unavailable(why: NotReady) -> ProviderError {
    ProviderError::Connect {
        provider: "local".into(),
        message: why.to_string(),
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
        // A turn that arrives while the model loads waits for it.
        let state = self.child.wait_settled(self.wait).await;
        let provider = self.provider(&state).map_err(|why| match why {
            NotReady::Loading(why) => unavailable(NotReady::Loading(format!(
                "{why} after {} s; try again in a moment",
                self.wait.as_secs()
            ))),
            failing => unavailable(failing),
        })?;
        provider.stream(request).await
    }

    async fn check(&self) -> Result<(), NotReady> {
        self.provider(&self.child.state()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(llama_server: PathBuf, dir: &std::path::Path) -> LocalModelConfig {
        LocalModelConfig {
            llama_server,
            model_path: "/nonexistent/smollm2.gguf".into(),
            ports: 18000..=19000,
            context: 2048,
            threads: 2,
            sampling: Sampling::default(),
            log_file: dir.join("llama.log"),
            startup_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let model = LocalModel::start(config("/nonexistent/llama-server".into(), dir.path()));
        let why = model.check().await.unwrap_err().to_string();
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

    #[tokio::test]
    async fn a_server_that_dies_of_sigill_is_retried_without_repacking_then_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A stand-in llama-server that records its arguments and dies of
        // SIGILL, as ggml's AMX kernels do on some machines.
        let program = dir.path().join("llama-server");
        std::fs::write(&program, "#!/bin/sh\necho \"args: $*\"\nkill -ILL $$\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700)).unwrap();
        let model_file = dir.path().join("model.gguf");
        std::fs::write(&model_file, b"GGUF").unwrap();
        let mut config = config(program, dir.path());
        config.model_path = model_file;
        let model = LocalModel::start(config);
        let error = model
            .stream(&CompletionRequest::default())
            .await
            .err()
            .unwrap();
        assert_eq!(error.code(), "llm_unavailable");
        let why = model.check().await.unwrap_err();
        let NotReady::Failing(why) = why else {
            panic!("a crash loop is not loading: {why:?}");
        };
        assert!(
            why.contains("crashed 5 times (SIGILL)") && why.contains("llama.log"),
            "{why}"
        );
        let log = std::fs::read_to_string(dir.path().join("llama.log")).unwrap();
        let runs: Vec<&str> = log.lines().filter(|l| l.starts_with("args:")).collect();
        assert!(!runs[0].contains("--no-repack"), "{log}");
        assert!(
            runs[1..].iter().all(|run| run.contains("--no-repack")),
            "{log}"
        );
        assert!(runs[0].contains("--temp 0.2"), "{log}");
    }
}

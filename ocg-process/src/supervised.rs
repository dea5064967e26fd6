//! [`SupervisedChild`]: a helper program (such as `llama-server`) kept running
//! by the service that needs it, with a state that tells the truth.
//!
//! One loop serves every helper: pick a free port, spawn the program (its
//! output appended to its log, killed with its handle and with this process),
//! wait for its HTTP health endpoint and an optional readiness check of the
//! caller's, then wait for it to exit and restart it under the
//! [`RestartPolicy`]. Quick crashes in a row end in
//! [`ChildState::CrashLoop`] instead of an endless "loading".
//!
//! A program killed by `SIGILL` executed an instruction this CPU does not
//! have (or a kernel path that the machine does not allow). If the spec has
//! [fallbacks](SupervisedSpec::fallbacks), the next one is taken at once,
//! with a log line saying why, and kept for the life of the supervisor.

use std::future::Future;
use std::ops::RangeInclusive;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::child::{ChildSpec, free_port, spawn_child, wait_http_ready};
use crate::restart::{Backoff, RestartPolicy};

/// Where the port goes in [`SupervisedSpec::args`].
pub const PORT: &str = "{port}";

/// A check run once the health endpoint answers, with the child's port: the
/// child counts as ready only when it passes (say, one real embedding).
pub type ReadyCheck =
    Arc<dyn Fn(u16) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Extra arguments to run with when the program dies of `SIGILL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// Appended to [`SupervisedSpec::args`].
    pub args: Vec<String>,
    /// What they turn off, for the log.
    pub reason: String,
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedSpec {
    /// Name for logs, state and errors, e.g. `llama-server (chat)`.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments; [`PORT`] is replaced by the chosen port.
    pub args: Vec<String>,
    /// Ports to choose from (a free one, not always the first).
    pub ports: RangeInclusive<u16>,
    /// The health path polled on `127.0.0.1:<port>` until it answers 2xx.
    pub health_path: String,
    /// Where the program's stdout and stderr are appended.
    pub log_file: PathBuf,
    /// How long one start may take to become ready.
    pub startup_timeout: Duration,
    /// Restart delays and when to give up.
    pub policy: RestartPolicy,
    /// Tried in order, one per death by `SIGILL`.
    pub fallbacks: Vec<Fallback>,
}

/// The child's state, as health endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChildState {
    /// Starting or restarting; `last_exit` says how the last run ended.
    Starting {
        /// Restarts so far.
        restarts: u32,
        /// How the previous run ended, if there was one.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_exit: Option<String>,
    },
    /// Answering.
    Ready {
        /// Its pid.
        pid: u32,
        /// Its port on 127.0.0.1.
        port: u16,
        /// Restarts so far.
        restarts: u32,
    },
    /// Cannot start at all (a program or file it needs is missing); the
    /// message says what to do. Never started, never retried.
    Unavailable {
        /// What is missing and what to do.
        message: String,
    },
    /// Crashed too often in a row; no longer restarted.
    CrashLoop {
        /// Quick crashes in a row.
        crashes: u32,
        /// How the last run ended (`SIGILL`, `exit code 1`, …).
        last_exit: String,
        /// The program's log.
        log_file: PathBuf,
    },
}

impl ChildState {
    /// Whether the state will not change without outside help.
    pub fn is_settled(&self) -> bool {
        !matches!(self, ChildState::Starting { .. })
    }

    /// A sentence for health checks and errors; `None` when ready.
    pub fn problem(&self, name: &str) -> Option<String> {
        match self {
            ChildState::Ready { .. } => None,
            ChildState::Unavailable { message } => Some(message.clone()),
            ChildState::Starting {
                last_exit: None, ..
            } => Some(format!("{name} is loading")),
            ChildState::Starting {
                restarts,
                last_exit: Some(exit),
            } => Some(format!(
                "{name} is restarting (it exited: {exit}; {restarts} restarts so far)"
            )),
            ChildState::CrashLoop {
                crashes,
                last_exit,
                log_file,
            } => Some(format!(
                "{name} crashed {crashes} times ({last_exit}); not restarting it; see {}",
                log_file.display()
            )),
        }
    }
}

/// How a process ended: `SIGILL`, `exit code 1`, ….
pub fn describe_exit(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned()),
        (None, None) => status.to_string(),
    }
}

/// A supervised helper program. Clones share it; when the last clone is
/// dropped, the program is killed and not restarted.
#[derive(Debug, Clone)]
pub struct SupervisedChild {
    name: Arc<str>,
    state: watch::Receiver<ChildState>,
    _stop: Arc<watch::Sender<()>>,
}

impl SupervisedChild {
    /// Start supervising `spec` in the background (needs a tokio runtime).
    pub fn start(spec: SupervisedSpec, ready_check: Option<ReadyCheck>) -> Self {
        let (state_tx, state) = watch::channel(ChildState::Starting {
            restarts: 0,
            last_exit: None,
        });
        let (stop, stopped) = watch::channel(());
        let name: Arc<str> = spec.name.as_str().into();
        tokio::spawn(supervise(spec, ready_check, state_tx, stopped));
        SupervisedChild {
            name,
            state,
            _stop: Arc::new(stop),
        }
    }

    /// A child that cannot start (say, its program is missing): its state
    /// is [`ChildState::Unavailable`] with `message`, for good.
    pub fn unavailable(name: &str, message: String) -> Self {
        let (_, state) = watch::channel(ChildState::Unavailable { message });
        let (stop, _) = watch::channel(());
        SupervisedChild {
            name: name.into(),
            state,
            _stop: Arc::new(stop),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state now.
    pub fn state(&self) -> ChildState {
        self.state.borrow().clone()
    }

    /// Wait until the child is ready or has given up, at most `timeout`;
    /// the state then.
    pub async fn wait_settled(&self, timeout: Duration) -> ChildState {
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(timeout, state.wait_for(ChildState::is_settled)).await;
        self.state()
    }
}

async fn supervise(
    spec: SupervisedSpec,
    ready_check: Option<ReadyCheck>,
    state: watch::Sender<ChildState>,
    mut stopped: watch::Receiver<()>,
) {
    let mut backoff = Backoff::new(spec.policy);
    let mut fallbacks = spec.fallbacks.iter();
    let mut extra: Vec<String> = Vec::new();
    let mut restarts = 0u32;
    let mut last_exit: Option<String> = None;
    loop {
        state.send_replace(ChildState::Starting {
            restarts,
            last_exit: last_exit.clone(),
        });
        let started = Instant::now();
        let run = run_once(&spec, &extra, ready_check.as_ref(), &state, restarts);
        let exit = tokio::select! {
            exit = run => exit,
            _ = stopped.changed() => return,
        };
        let ran = started.elapsed();
        tracing::warn!(child = %spec.name, exit = %exit.text, secs = ran.as_secs_f32(), "exited");
        if exit.sigill {
            if let Some(fallback) = fallbacks.next() {
                tracing::warn!(
                    child = %spec.name,
                    args = ?fallback.args,
                    "killed by SIGILL: it executed an instruction this machine cannot run; \
                     restarting at once with {} ({})",
                    fallback.args.join(" "),
                    fallback.reason
                );
                extra.extend(fallback.args.iter().cloned());
                restarts += 1;
                last_exit = Some(exit.text);
                continue;
            }
        }
        last_exit = Some(exit.text.clone());
        let Some(delay) = backoff.after_exit(ran) else {
            tracing::error!(
                child = %spec.name,
                crashes = backoff.quick_crashes(),
                log = %spec.log_file.display(),
                "crashed too often in a row; not restarting it"
            );
            state.send_replace(ChildState::CrashLoop {
                crashes: backoff.quick_crashes(),
                last_exit: exit.text,
                log_file: spec.log_file.clone(),
            });
            let _ = stopped.changed().await;
            return;
        };
        restarts += 1;
        state.send_replace(ChildState::Starting {
            restarts,
            last_exit: last_exit.clone(),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// How one run ended.
struct Exit {
    text: String,
    sigill: bool,
}

impl Exit {
    fn of(status: std::io::Result<ExitStatus>) -> Self {
        match status {
            Ok(status) => Exit {
                text: describe_exit(&status),
                sigill: status.signal() == Some(nix::sys::signal::Signal::SIGILL as i32),
            },
            Err(error) => Exit {
                text: format!("cannot wait for it: {error}"),
                sigill: false,
            },
        }
    }

    fn failed(text: String) -> Self {
        Exit {
            text,
            sigill: false,
        }
    }
}

/// Spawn, wait until ready (then publish it), wait until it exits.
async fn run_once(
    spec: &SupervisedSpec,
    extra: &[String],
    ready_check: Option<&ReadyCheck>,
    state: &watch::Sender<ChildState>,
    restarts: u32,
) -> Exit {
    let Some(port) = free_port(&spec.ports) else {
        return Exit::failed(format!("no free port in {:?}", spec.ports));
    };
    let args = spec
        .args
        .iter()
        .map(|arg| arg.replace(PORT, &port.to_string()))
        .chain(extra.iter().cloned())
        .collect();
    if let Some(dir) = spec.log_file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let child_spec = ChildSpec {
        name: spec.name.clone(),
        program: spec.program.clone(),
        args,
        log_file: spec.log_file.clone(),
    };
    let mut child = match spawn_child(&child_spec) {
        Ok(child) => child,
        Err(error) => return Exit::failed(error.to_string()),
    };
    let pid = child.id().unwrap_or(0);
    let url = format!("http://127.0.0.1:{port}{}", spec.health_path);
    let ready = match wait_http_ready(&spec.name, &url, &mut child, spec.startup_timeout).await {
        Ok(()) => match ready_check {
            Some(check) => check(port).await,
            None => Ok(()),
        },
        Err(crate::ProcessError::ExitedEarly { .. }) => {
            return Exit::of(child.wait().await);
        }
        Err(error) => Err(error.to_string()),
    };
    match ready {
        Ok(()) => {
            tracing::info!(child = %spec.name, pid, port, "ready");
            state.send_replace(ChildState::Ready {
                pid,
                port,
                restarts,
            });
            Exit::of(child.wait().await)
        }
        Err(why) => {
            tracing::warn!(child = %spec.name, %why, "not ready; killing it");
            let _ = child.kill().await;
            Exit::failed(format!("not ready: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str) -> SupervisedSpec {
        SupervisedSpec {
            name: "helper".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into(), "helper".into()],
            ports: 18000..=19000,
            health_path: "/health".into(),
            log_file: dir.join("helper.log"),
            startup_timeout: Duration::from_secs(5),
            policy: RestartPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
                reset_after: Duration::from_secs(60),
                give_up_after: 3,
            },
            fallbacks: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_crash_loop_is_reported_with_the_signal_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let child = SupervisedChild::start(spec(dir.path(), "kill -ILL $$"), None);
        let state = child.wait_settled(Duration::from_secs(10)).await;
        let ChildState::CrashLoop {
            crashes, last_exit, ..
        } = &state
        else {
            panic!("{state:?}");
        };
        assert_eq!((*crashes, last_exit.as_str()), (3, "SIGILL"));
        let problem = state.problem("helper").unwrap();
        assert!(
            problem.contains("crashed 3 times (SIGILL)") && problem.contains("helper.log"),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn sigill_takes_the_fallback_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        // Dies of SIGILL unless started with --safe; then exits 3 each time.
        let mut spec = spec(
            dir.path(),
            r#"for a in "$@"; do [ "$a" = --safe ] && { echo "safe mode"; exit 3; }; done; kill -ILL $$"#,
        );
        spec.fallbacks = vec![Fallback {
            args: vec!["--safe".into()],
            reason: "no fast path".into(),
        }];
        let child = SupervisedChild::start(spec, None);
        let state = child.wait_settled(Duration::from_secs(10)).await;
        assert!(
            matches!(&state, ChildState::CrashLoop { last_exit, .. } if last_exit == "exit code 3"),
            "{state:?}"
        );
        let log = std::fs::read_to_string(dir.path().join("helper.log")).unwrap();
        assert_eq!(log.matches("safe mode").count(), 3, "{log}");
    }

    #[tokio::test]
    async fn an_unavailable_child_is_settled_at_once_and_says_why() {
        let child = SupervisedChild::unavailable("helper", "helper not found: set X".into());
        let state = child.wait_settled(Duration::from_secs(10)).await;
        assert_eq!(
            state,
            ChildState::Unavailable {
                message: "helper not found: set X".into()
            }
        );
        assert_eq!(state.problem("helper").unwrap(), "helper not found: set X");
    }

    #[tokio::test]
    async fn a_ready_child_is_published_and_dies_with_the_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut spec = spec(
            dir.path(),
            "exec python3 -m http.server --bind 127.0.0.1 $1",
        );
        spec.args.push(PORT.into());
        spec.ports = port..=port;
        spec.health_path = "/".into();
        let child = SupervisedChild::start(spec, None);
        let state = child.wait_settled(Duration::from_secs(20)).await;
        let ChildState::Ready { pid, port: p, .. } = state else {
            panic!("{state:?}");
        };
        assert_eq!(p, port);
        drop(child);
        let mut gone = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            gone = crate::proc_stat::read(pid).is_none_or(|s| s.is_zombie());
            if gone {
                break;
            }
        }
        assert!(gone, "the child ends with its last handle");
    }
}

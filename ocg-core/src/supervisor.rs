//! The [`ProcessSupervisor`] contract: start, stop and inspect named services.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// How to tell that a started service is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    /// Ready once the process is running.
    Started,
    /// Ready when `GET <url>` answers 2xx.
    Http {
        /// Full URL, e.g. `http://127.0.0.1:55003/health`.
        url: String,
    },
    /// Ready when the service has written its base URL (one line,
    /// `http://host:port`) to `addr_file` and `GET <base><path>` answers 2xx.
    /// For services that choose their own port.
    AnnouncedHttp {
        /// The file the service writes its address to.
        addr_file: PathBuf,
        /// Path of the health route, e.g. `/health`.
        path: String,
    },
    /// Ready when the Unix socket exists and `GET <path>` over it answers 2xx.
    UnixHttp {
        /// Socket path.
        socket: PathBuf,
        /// Path of the health route.
        path: String,
    },
}

/// Everything needed to start one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Stable name (`embedding`, `agent`, `gateway`); names pid and log files.
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// How readiness is detected.
    pub readiness: Readiness,
    /// How long to wait for readiness before giving up.
    pub ready_timeout: Duration,
}

/// A service that was started and became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningService {
    /// Its process id (also its process group id).
    pub pid: u32,
}

/// What is known about a service from its pid file and the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// Its recorded process is alive and is the one that was started.
    Running {
        /// Process id.
        pid: u32,
    },
    /// No pid file.
    Stopped,
    /// A pid file whose process is gone or is another process now.
    StalePidFile {
        /// The recorded pid.
        pid: u32,
    },
}

/// What a stop did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StopOutcome {
    /// Nothing was running.
    NotRunning,
    /// A stale pid file was removed; nothing was signalled.
    StalePidFileRemoved {
        /// The recorded pid.
        pid: u32,
    },
    /// The process group was stopped.
    Stopped {
        /// Process id.
        pid: u32,
        /// The last signal it took (`SIGTERM`, `SIGINT` or `SIGKILL`).
        signal: String,
        /// How long stopping took.
        elapsed_ms: u64,
    },
}

/// Starts, stops and inspects services by name.
///
/// Contract: [`start`](ProcessSupervisor::start) returns only once the
/// service is ready, and stops what it started when readiness fails (the error
/// says why). [`stop`](ProcessSupervisor::stop) of a service that is not
/// running is not an error. A recorded process that is not the one that was
/// started (its pid reused) is never signalled.
#[async_trait]
pub trait ProcessSupervisor: Send + Sync {
    /// Start `spec` and wait until it is ready.
    async fn start(&self, spec: &ServiceSpec) -> Result<RunningService>;

    /// Stop the named service (its whole process group). `force` skips the
    /// gentle signals.
    async fn stop(&self, name: &str, force: bool) -> Result<StopOutcome>;

    /// What is known about the named service.
    async fn state(&self, name: &str) -> Result<ServiceState>;
}

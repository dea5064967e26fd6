//! [`PidFileSupervisor`]: services as detached process groups tracked by pid files.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ocg_core::{ProcessSupervisor, RunningService, ServiceSpec, ServiceState, StopOutcome};
use tokio::process::Child;

use crate::pid_file::{self, Liveness, PidRecord};
use crate::signal::{StopSchedule, stop_group};
use crate::{ProcessError, log_file, probe, spawn};

/// Runs services as detached process groups recorded in `<pid-dir>/ocg-<name>.pid`,
/// logging to `<log-dir>/ocg-<name>.log`.
#[derive(Debug, Clone)]
pub struct PidFileSupervisor {
    pid_dir: PathBuf,
    log_dir: PathBuf,
    schedule: StopSchedule,
}

impl PidFileSupervisor {
    /// A supervisor over these directories, with the documented stop schedule.
    pub fn new(pid_dir: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> Self {
        PidFileSupervisor {
            pid_dir: pid_dir.into(),
            log_dir: log_dir.into(),
            schedule: StopSchedule::default(),
        }
    }

    /// Use another stop schedule (tests shorten the grace periods).
    pub fn with_stop_schedule(mut self, schedule: StopSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// The pid file of service `name`.
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.pid_dir.join(format!("ocg-{name}.pid"))
    }

    /// The log file of service `name`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        log_file::path(&self.log_dir, name)
    }

    /// The last `lines` lines of the log of `name` (empty when unreadable).
    pub fn log_tail(&self, name: &str, lines: usize) -> Vec<String> {
        log_file::tail(&self.log_file(name), lines).unwrap_or_default()
    }

    /// Start `spec`, record it and wait until it is ready; the child handle is
    /// returned for callers that stay attached. On failure the process group
    /// is stopped and the pid file removed.
    pub async fn launch(
        &self,
        spec: &ServiceSpec,
    ) -> Result<(Child, RunningService), ProcessError> {
        if let ServiceState::Running { pid } = self.service_state(&spec.name)? {
            return Err(ProcessError::AlreadyRunning {
                service: spec.name.clone(),
                pid,
            });
        }
        create_private_dir(&self.pid_dir)?;
        create_private_dir(&self.log_dir)?;
        let log_path = self.log_file(&spec.name);
        let mut log = log_file::open_for_append(&log_path)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        writeln!(log, "--- ocg: starting {} (unix time {now}) ---", spec.name)
            .map_err(|e| ProcessError::file(&log_path, e))?;

        let mut child = spawn::spawn(spec, log)?;
        let pid = child.id().unwrap_or_default();
        let pid_path = self.pid_file(&spec.name);
        if let Some(record) = PidRecord::of(pid) {
            record.write(&pid_path)?;
        }
        tracing::debug!(service = %spec.name, pid, "spawned");

        match probe::wait_ready(&spec.name, &spec.readiness, &mut child, spec.ready_timeout).await {
            Ok(()) => Ok((child, RunningService { pid })),
            Err(error) => {
                if let Ok(pgid) = i32::try_from(pid) {
                    let _ = stop_group(pgid, false, self.schedule).await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                pid_file::remove(&pid_path)?;
                Err(error)
            }
        }
    }

    /// Stop service `name`: escalate on its process group unless its pid was
    /// reused, then remove the pid file.
    pub async fn stop_service(&self, name: &str, force: bool) -> Result<StopOutcome, ProcessError> {
        let pid_path = self.pid_file(name);
        let record = match PidRecord::read(&pid_path) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(StopOutcome::NotRunning),
            Err(error) => {
                tracing::warn!(%error, "removing an unreadable pid file");
                pid_file::remove(&pid_path)?;
                return Ok(StopOutcome::NotRunning);
            }
        };
        let outcome = match (record.liveness(), record.pgid()) {
            (Liveness::Alive | Liveness::GroupOnly, Some(pgid)) => {
                let start = Instant::now();
                let signal = stop_group(pgid, force, self.schedule).await?;
                StopOutcome::Stopped {
                    pid: record.pid,
                    signal: signal.to_owned(),
                    elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                }
            }
            _ => StopOutcome::StalePidFileRemoved { pid: record.pid },
        };
        pid_file::remove(&pid_path)?;
        Ok(outcome)
    }

    /// What the pid file and the process table say about `name`.
    pub fn service_state(&self, name: &str) -> Result<ServiceState, ProcessError> {
        Ok(match PidRecord::read(&self.pid_file(name))? {
            None => ServiceState::Stopped,
            Some(record) if record.liveness() == Liveness::Alive => {
                ServiceState::Running { pid: record.pid }
            }
            Some(record) => ServiceState::StalePidFile { pid: record.pid },
        })
    }
}

#[async_trait]
impl ProcessSupervisor for PidFileSupervisor {
    async fn start(&self, spec: &ServiceSpec) -> ocg_core::Result<RunningService> {
        // The child keeps running detached when its handle is dropped.
        Ok(self.launch(spec).await?.1)
    }

    async fn stop(&self, name: &str, force: bool) -> ocg_core::Result<StopOutcome> {
        Ok(self.stop_service(name, force).await?)
    }

    async fn state(&self, name: &str) -> ocg_core::Result<ServiceState> {
        Ok(self.service_state(name)?)
    }
}

/// Create `dir` (and parents) with mode 0700 when missing.
fn create_private_dir(dir: &Path) -> Result<(), ProcessError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ProcessError::file(dir, e))
}

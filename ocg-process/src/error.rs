use std::path::PathBuf;

/// What can go wrong while supervising processes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {service} ({}): {source}", program.display())]
    Spawn {
        /// Service name.
        service: String,
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The service exited before it became ready.
    #[error("{service} exited before it became ready ({status})")]
    ExitedEarly {
        /// Service name.
        service: String,
        /// Its exit status.
        status: String,
    },
    /// The service is already running.
    #[error("{service} is already running (PID {pid})")]
    AlreadyRunning {
        /// Service name.
        service: String,
        /// Its pid.
        pid: u32,
    },
    /// The service did not become ready in time.
    #[error("{service} did not become ready within {timeout_secs} s: {last_error}")]
    NotReady {
        /// Service name.
        service: String,
        /// The timeout.
        timeout_secs: u64,
        /// The last probe failure.
        last_error: String,
    },
    /// A file (pid file, log, directory) could not be used.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("cannot signal process group {pgid}: {source}")]
    Signal {
        /// The group.
        pgid: i32,
        /// The OS error.
        source: nix::Error,
    },
    /// The env file could not be read or written.
    #[error(transparent)]
    Config(#[from] ocg_core::config::ConfigError),
    /// The process group survived SIGKILL.
    #[error("process group {pgid} is still alive after SIGKILL")]
    Unkillable {
        /// The group.
        pgid: i32,
    },
}

impl ProcessError {
    pub(crate) fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ProcessError::File {
            path: path.into(),
            source,
        }
    }
}

impl From<ProcessError> for ocg_core::Error {
    fn from(error: ProcessError) -> Self {
        match error {
            ProcessError::NotReady { .. } => ocg_core::Error::Timeout(error.to_string()),
            ProcessError::ExitedEarly { ref service, .. } => {
                ocg_core::Error::unavailable(service.clone(), error.to_string())
            }
            ProcessError::Spawn { source, .. } | ProcessError::File { source, .. } => {
                ocg_core::Error::Io(source)
            }
            other => ocg_core::Error::unavailable("process", other.to_string()),
        }
    }
}

//! # ocg-process: running OCG's services as real processes
//!
//! [`PidFileSupervisor`] implements `ocg-core`'s
//! [`ProcessSupervisor`](ocg_core::ProcessSupervisor) the way OCG's users know
//! it from the docs:
//!
//! - every service runs in its own session and process group, so a stop
//!   signal reaches its children too (llama-server under the embedding
//!   service) and a terminal's Ctrl-C does not;
//! - `<pid-dir>/ocg-<service>.pid` records the pid **and the process start
//!   time** from `/proc/<pid>/stat`, written atomically; a pid that is alive
//!   with another start time belongs to someone else and is never signalled;
//! - a stop escalates SIGTERM → SIGINT → SIGKILL on the process group, each
//!   step waiting until the group is gone (zombies do not count) or its grace
//!   period ends;
//! - readiness is an HTTP `/health` over TCP or over a Unix socket, with a
//!   timeout and an early exit when the child dies first;
//! - logs go to `<log-dir>/ocg-<service>.log`, opened without following
//!   symlinks, mode 0600.
//!
//! [`ForegroundSupervisor`] keeps services attached and restarts crashed ones
//! with exponential backoff; [`supervised::SupervisedChild`] does the same for
//! a helper program a service runs (llama-server); [`stack`] knows the three OCG services and the
//! order they start and stop in.
#![warn(missing_docs)]

pub mod child;
mod error;
mod foreground;
#[allow(unsafe_code)]
pub mod heap;
pub mod log_file;
pub mod ownership;
mod pid_file;
pub mod private;
pub mod probe;
pub mod proc_stat;
mod restart;
pub mod sandbox;
pub mod secrets;
mod signal;
#[allow(unsafe_code)]
mod spawn;
pub mod stack;
pub mod supervised;
mod supervisor;

pub use error::ProcessError;
pub use foreground::ForegroundSupervisor;
pub use pid_file::PidRecord;
pub use restart::{Backoff, RestartPolicy};
pub use signal::StopSchedule;
pub use supervisor::PidFileSupervisor;

/// Completes when the process receives SIGTERM or SIGINT: the shutdown
/// trigger of every OCG service and of `ocg start --foreground`.
///
/// The handlers are installed when this function is called, not when the
/// future is first polled: a service calls it before it starts listening, so
/// a SIGTERM that arrives right after its first answer is a graceful
/// shutdown rather than the default action (death by signal). Needs a tokio
/// runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}

/// This process's name among the processes that share a store (the
/// schedulers of one database, the gateways of one lease): `host:pid:`
/// and 16 random hex digits, so a restarted process is a new one even
/// under the same pid.
pub fn instance_id() -> String {
    use std::io::Read;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (now as u64).to_le_bytes();
    }
    let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}:{}:{nonce}", std::process::id())
}

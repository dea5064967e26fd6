//! Starting a service in a session and process group of its own.

use std::process::Stdio;

use nix::unistd::setsid;
use ocg_core::ServiceSpec;
use tokio::process::{Child, Command};

use crate::ProcessError;

/// Start `spec` with stdout and stderr appended to `log`.
///
/// The child calls `setsid()` before `exec`: it becomes the leader of a new
/// session and process group whose id is its pid, detached from our terminal.
/// Signals sent to that group reach everything it starts.
pub(crate) fn spawn(spec: &ServiceSpec, log: std::fs::File) -> Result<Child, ProcessError> {
    let error = |source| ProcessError::Spawn {
        service: spec.name.clone(),
        program: spec.program.clone(),
        source,
    };
    let stderr = log.try_clone().map_err(error)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe functions may be called. It calls setsid(2), which is
    // async-signal-safe, allocates nothing and touches no shared state.
    unsafe {
        command.pre_exec(|| setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    command.spawn().map_err(error)
}

/// Ask the kernel to kill the child (SIGKILL) when this process dies: a
/// helper has nothing to save, and a SIGTERM can be ignored while it loads.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: runs in the forked child before exec; prctl(2) is
    // async-signal-safe, allocates nothing and touches no shared state.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

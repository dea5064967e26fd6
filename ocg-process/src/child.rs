//! Helper programs a service runs as its own children (llama-server).
//!
//! Unlike services, a helper stays in its parent's process group, so
//! `ocg stop` (which signals the service's group) stops it too. It also gets
//! `PR_SET_PDEATHSIG`: if its parent dies without cleaning up (`kill -9`),
//! the kernel kills it too, so no orphan keeps a port and memory.

use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ocg_core::Readiness;
use tokio::process::{Child, Command};

use crate::{ProcessError, log_file, probe};

/// A helper program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// Name for logs and errors.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where its stdout and stderr are appended (opened 0600, no symlinks).
    pub log_file: PathBuf,
}

/// Start `spec`, killed when its handle is dropped or this process dies.
pub fn spawn_child(spec: &ChildSpec) -> Result<Child, ProcessError> {
    let log = log_file::open_for_append(&spec.log_file)?;
    let error = |source| ProcessError::Spawn {
        service: spec.name.clone(),
        program: spec.program.clone(),
        source,
    };
    let stderr = log.try_clone().map_err(error)?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true);
    crate::spawn::die_with_parent(&mut command);
    command.spawn().map_err(error)
}

/// Wait until `GET url` answers 2xx, `child` exits, or `timeout` passes.
pub async fn wait_http_ready(
    name: &str,
    url: &str,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), ProcessError> {
    let readiness = Readiness::Http {
        url: url.to_owned(),
    };
    probe::wait_ready(name, &readiness, child, timeout).await
}

/// A port of `ports` on 127.0.0.1 that can be bound now. The scan starts at
/// an offset taken from the pid and the clock rather than at the first port,
/// so helpers starting together (the embedding model, the chat model, tests)
/// rarely race for the same one; a lost race only costs a restart.
pub fn free_port(ports: &RangeInclusive<u16>) -> Option<u16> {
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
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_dies_with_its_handle_and_logs_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ChildSpec {
            name: "helper".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo hello from helper; exec sleep 30".into()],
            log_file: dir.path().join("helper.log"),
        };
        let mut child = spawn_child(&spec).unwrap();
        let pid = child.id().unwrap();
        let error = wait_http_ready(
            "helper",
            "http://127.0.0.1:1/health",
            &mut child,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(
            error.to_string().contains("did not become ready"),
            "{error}"
        );
        drop(child);
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            crate::proc_stat::read(pid).is_none_or(|s| s.is_zombie())
        });
        assert!(gone, "dropping the handle kills the helper");
        let log = std::fs::read_to_string(dir.path().join("helper.log")).unwrap();
        assert!(log.contains("hello from helper"));
        assert!(free_port(&(18000..=19000)).is_some());
    }
}

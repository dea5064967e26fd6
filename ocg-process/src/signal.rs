//! Stopping a process group: SIGTERM, SIGINT, SIGKILL, each with a grace period.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::ProcessError;
use crate::proc_stat::group_alive;

/// How long each gentle signal is given before the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSchedule {
    /// Wait after SIGTERM, and again after SIGINT.
    pub grace: Duration,
    /// Wait after SIGKILL before reporting the group unkillable.
    pub kill_wait: Duration,
}

impl Default for StopSchedule {
    /// The documented schedule: SIGTERM, 3 s, SIGINT, 3 s, SIGKILL.
    fn default() -> Self {
        StopSchedule {
            grace: Duration::from_secs(3),
            kill_wait: Duration::from_secs(3),
        }
    }
}

/// Stop process group `pgid`; returns the last signal sent.
///
/// Moves on as soon as the group has no live member. `force` sends SIGKILL at
/// once. A group that is already gone is not an error.
pub(crate) async fn stop_group(
    pgid: i32,
    force: bool,
    schedule: StopSchedule,
) -> Result<&'static str, ProcessError> {
    let steps: &[(Signal, Duration)] = if force {
        &[(Signal::SIGKILL, schedule.kill_wait)]
    } else {
        &[
            (Signal::SIGTERM, schedule.grace),
            (Signal::SIGINT, schedule.grace),
            (Signal::SIGKILL, schedule.kill_wait),
        ]
    };
    for &(signal, wait) in steps {
        match killpg(Pid::from_raw(pgid), signal) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => return Ok(signal.as_str()),
            Err(source) => return Err(ProcessError::Signal { pgid, source }),
        }
        tracing::debug!(pgid, signal = signal.as_str(), "signalled process group");
        if wait_gone(pgid, wait).await {
            return Ok(signal.as_str());
        }
    }
    Err(ProcessError::Unkillable { pgid })
}

/// Poll until the group is gone or `limit` passes; polls quickly at first so
/// a cooperative service is noticed within milliseconds.
async fn wait_gone(pgid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    let mut interval = Duration::from_millis(2);
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}

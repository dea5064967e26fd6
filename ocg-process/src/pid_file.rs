//! Pid files: `<pid> <start time>` written atomically.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::ProcessError;
use crate::proc_stat;

/// What a pid file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    /// Process id (and process group id) of the service.
    pub pid: u32,
    /// Its start time from `/proc/<pid>/stat`.
    pub start_time: u64,
}

/// What the process table says about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The recorded process runs.
    Alive,
    /// The recorded process is gone, but its process group still has members
    /// (a child that outlived the service). A pid that leads a live group is
    /// never handed out again, so the group is still ours.
    GroupOnly,
    /// Nothing of it is left, or the pid now belongs to another process.
    Gone,
}

impl PidRecord {
    /// The record of a running process, reading its start time.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = proc_stat::read(pid)?;
        Some(PidRecord {
            pid,
            start_time: stat.start_time,
        })
    }

    pub(crate) fn liveness(&self) -> Liveness {
        match proc_stat::read(self.pid) {
            Some(stat) if stat.start_time == self.start_time && !stat.is_zombie() => {
                Liveness::Alive
            }
            // Same pid, another start time: someone else's process now.
            Some(stat) if stat.start_time != self.start_time => Liveness::Gone,
            _ if self.pgid().is_some_and(proc_stat::group_alive) => Liveness::GroupOnly,
            _ => Liveness::Gone,
        }
    }

    pub(crate) fn pgid(&self) -> Option<i32> {
        i32::try_from(self.pid).ok().filter(|pid| *pid > 1)
    }

    /// Read a pid file; `Ok(None)` when it does not exist. A file that does
    /// not hold a valid record is an error.
    pub fn read(path: &Path) -> Result<Option<Self>, ProcessError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProcessError::file(path, e)),
        };
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next(), fields.next()) {
            (Some(Ok(pid)), Some(Ok(start_time)), None) => Ok(Some(PidRecord {
                pid: u32::try_from(pid).map_err(|_| invalid(path))?,
                start_time,
            })),
            _ => Err(invalid(path)),
        }
    }

    /// Write the record to `path` atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<(), ProcessError> {
        let tmp = path.with_extension(format!("pid.tmp.{}", std::process::id()));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&tmp)?;
            writeln!(file, "{} {}", self.pid, self.start_time)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| ProcessError::file(path, e))
    }
}

fn invalid(path: &Path) -> ProcessError {
    ProcessError::file(
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            "not a pid file of OCG (expected `<pid> <start time>`)",
        ),
    )
}

/// Remove a file, ignoring that it is already gone.
pub(crate) fn remove(path: &Path) -> Result<(), ProcessError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProcessError::file(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ocg-agent.pid");
        assert_eq!(PidRecord::read(&path).unwrap(), None);
        let record = PidRecord::of(std::process::id()).unwrap();
        record.write(&path).unwrap();
        assert_eq!(PidRecord::read(&path).unwrap(), Some(record));
        assert_eq!(record.liveness(), Liveness::Alive);
        for garbage in ["", "abc", "12", "12 34 56", "-1 5"] {
            fs::write(&path, garbage).unwrap();
            assert!(PidRecord::read(&path).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_reused_pid_is_not_alive() {
        let me = PidRecord::of(std::process::id()).unwrap();
        let reused = PidRecord {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(reused.liveness(), Liveness::Gone);
    }
}

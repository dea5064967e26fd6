//! Reading `/proc/<pid>/stat`: state, process group and start time.

use std::fs;

/// The fields of `/proc/<pid>/stat` OCG needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process state (`R`, `S`, `Z`, …).
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks after boot: with the pid, it names a process
    /// uniquely, so a reused pid is recognized.
    pub start_time: u64,
}

impl ProcStat {
    /// Whether the process has exited and only waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Read the stat of `pid`; `None` when there is no such process.
pub fn read(pid: u32) -> Option<ProcStat> {
    parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parse the text of a stat file. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted from its closing `)`.
pub fn parse(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether process group `pgid` has a member that has not exited.
///
/// `kill(-pgid, 0)` alone is not enough: a zombie still belongs to its group
/// until reaped, and whoever reaps it (init, after `ocg start` exited) may be
/// slow. So when the kernel still knows the group, the process table is
/// scanned for a live member.
pub fn group_alive(pgid: i32) -> bool {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    if killpg(Pid::from_raw(pgid), None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read)
        .any(|stat| stat.pgrp == pgid && !stat.is_zombie())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let text = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 1234);
        assert_eq!(stat.start_time, 987654);
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn reads_this_process() {
        let stat = read(std::process::id()).unwrap();
        assert!(!stat.is_zombie());
        assert!(stat.start_time > 0);
        assert!(group_alive(stat.pgrp));
    }
}

//! Service log files: opened safely, read back for error reports and `ocg logs`.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;

use crate::ProcessError;

/// The log file of service `name` in `log_dir`: `ocg-<name>.log`.
pub fn path(log_dir: &Path, name: &str) -> PathBuf {
    log_dir.join(format!("ocg-{name}.log"))
}

/// Open `path` for appending: created 0600, never through a symlink (a link
/// planted at `/tmp/ocg-agent.log` must not redirect our writes), and tightened
/// to 0600 when it already existed with looser permissions.
pub fn open_for_append(path: &Path) -> Result<File, ProcessError> {
    let file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|e| ProcessError::file(path, e))?;
    let metadata = file.metadata().map_err(|e| ProcessError::file(path, e))?;
    if !metadata.is_file() {
        return Err(ProcessError::file(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| ProcessError::file(path, e))?;
    }
    Ok(file)
}

/// The last `lines` lines of the file (lossy UTF-8), reading at most the
/// last 256 KiB.
pub fn tail(path: &Path, lines: usize) -> io::Result<Vec<String>> {
    const WINDOW: u64 = 256 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    Ok(all[skip..].iter().map(|l| (*l).to_owned()).collect())
}

/// Copy what is appended to `path` to `out` until `out` fails (the reader
/// went away). Starts at the current end; a truncated file is followed from
/// its new start.
pub async fn follow(path: &Path, out: &mut impl Write) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut position = file.seek(SeekFrom::End(0))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let len = fs::metadata(path)?.len();
        if len < position {
            file = File::open(path)?;
            position = 0;
        }
        if len > position {
            file.seek(SeekFrom::Start(position))?;
            let n = file.read(&mut buffer)?;
            position += n as u64;
            out.write_all(&buffer[..n])?;
            out.flush()?;
            continue;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_and_tightens_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, "").unwrap();
        let link = dir.path().join("ocg-agent.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_for_append(&link).is_err());

        let loose = dir.path().join("loose.log");
        fs::write(&loose, "old\n").unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = open_for_append(&loose).unwrap();
        writeln!(file, "new").unwrap();
        assert_eq!(fs::read_to_string(&loose).unwrap(), "old\nnew\n");
        assert_eq!(
            fs::metadata(&loose).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&path, 2).unwrap(), vec!["c", "d"]);
        assert_eq!(tail(&path, 10).unwrap().len(), 4);
    }
}

//! Exclusive ownership of an install, held by the kernel rather than
//! inferred from pid files.
//!
//! Each service holds an exclusive `flock` on a lock file of its own in the
//! data dir for as long as it runs, and refuses to start without it: a
//! second embedding service can no longer open the same SQLite file and
//! FAISS indexes as the first, whatever the pid dir says. `ocg start`,
//! `stop` and `restart` hold one in the pid dir for their whole run, so two
//! of them cannot interleave. The kernel drops a lock when its holder dies,
//! `kill -9` included, so a lock is never stale. The holder's pid is written
//! into the file, for the message of whoever is refused.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{what} is owned by another process{}: {}", holder.map(|p| format!(" (PID {p})")).unwrap_or_default(), path.display())]
    Held {
        /// What the lock protects, e.g. `the embedding service's data`.
        what: String,
        /// The holder's pid, when it wrote one.
        holder: Option<u32>,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An exclusive lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct OwnerLock {
    _file: Flock<File>,
    path: PathBuf,
}

impl OwnerLock {
    /// Take the lock at `path` (created 0600, its directory 0700) without
    /// waiting, and write this process's pid into it. `what` names what it
    /// protects, for the error.
    pub fn acquire(path: &Path, what: &str) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(path)
                .map_err(io)?
        };
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    what: what.to_owned(),
                    holder: text.trim().parse().ok(),
                    path: path.to_owned(),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(OwnerLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock a service holds over its part of `data_dir` while it runs:
/// `<data_dir>/.ocg-<service>.lock`.
pub fn lock_service(data_dir: &Path, service: &str) -> Result<OwnerLock, LockError> {
    OwnerLock::acquire(
        &data_dir.join(format!(".ocg-{service}.lock")),
        &format!("the {service} service of {}", data_dir.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_and_told_who_owns_it_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_service(dir.path(), "agent").unwrap();
        let error = lock_service(dir.path(), "agent").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("the agent service")
                && text.contains(&format!("(PID {})", std::process::id())),
            "{text}"
        );
        // Other services have locks of their own.
        let embedding = lock_service(dir.path(), "embedding").unwrap();
        drop(first);
        let again = lock_service(dir.path(), "agent").unwrap();
        assert!(again.path().ends_with(".ocg-agent.lock"));
        drop(embedding);
    }
}

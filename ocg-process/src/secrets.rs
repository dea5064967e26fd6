//! The install's tokens: generated at first start into its env file.
//!
//! A token that is not configured (`OCG_UI_TOKEN`, `OCG_EMBEDDING_TOKEN`) is
//! created once, 256 random bits from the OS, and stored in the env file
//! (mode 0600) that every OCG program of the install reads, so the services
//! that must share it do. Two programs starting at once agree on one token:
//! the file is read again under a lock on its directory before anything is
//! written.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use ocg_core::config::env_file::{self, EnvFile};
use ocg_core::config::{Config, DEFAULT_CONFIG_FILE, Secret};

use crate::ProcessError;

/// The env file generated tokens go to: the one the config was read from,
/// else `./env.config`.
pub fn token_file(config: &Config) -> PathBuf {
    config.file().map_or_else(
        || std::path::absolute(DEFAULT_CONFIG_FILE).unwrap_or_else(|_| DEFAULT_CONFIG_FILE.into()),
        Path::to_path_buf,
    )
}

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The config (environment or env file) had it.
    Configured,
    /// It was just created and stored in this env file.
    Generated(PathBuf),
}

/// The token `key` of the install: the configured one, else one read from
/// or created in the env file (see the module docs).
pub fn ensure_token(config: &Config, key: &str) -> Result<(Secret, TokenSource), ProcessError> {
    if let Some(value) = config.raw().get(key) {
        return Ok((Secret::new(value.value.clone()), TokenSource::Configured));
    }
    let path = token_file(config);
    let _lock = lock_dir_of(&path)?;
    // Another program may have written it since the config was read.
    if let Ok(file) = EnvFile::read(&path)
        && let Some(value) = file.get(key).filter(|v| !v.is_empty())
    {
        return Ok((Secret::new(value), TokenSource::Configured));
    }
    rotate_token_locked(&path, key).map(|token| (token, TokenSource::Generated(path)))
}

/// Replace the token `key` in the env file at `path` with a new one.
pub fn rotate_token(path: &Path, key: &str) -> Result<Secret, ProcessError> {
    let _lock = lock_dir_of(path)?;
    rotate_token_locked(path, key)
}

fn rotate_token_locked(path: &Path, key: &str) -> Result<Secret, ProcessError> {
    let token = Secret::generate().map_err(|e| ProcessError::file("/dev/urandom", e))?;
    env_file::set_key(path, key, token.expose())?;
    Ok(token)
}

/// An exclusive lock on the directory of `path`: the env file itself is
/// replaced by rename on every write, so a lock on it would not hold.
fn lock_dir_of(path: &Path) -> Result<Flock<File>, ProcessError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file = File::open(dir).map_err(|e| ProcessError::file(dir, e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| ProcessError::file(dir, std::io::Error::from(errno)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::config::Sources;

    /// The config of an install whose env file is in `dir` (created empty
    /// when missing), with `env` as the process environment.
    fn config_in(dir: &Path, env: &[(&str, &str)]) -> Config {
        let file = dir.join("env.config");
        if !file.exists() {
            std::fs::write(&file, "").unwrap();
        }
        let sources = Sources {
            file: Some(file),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: Vec::new(),
        };
        Config::load(&sources).unwrap()
    }

    #[test]
    fn a_missing_token_is_created_once_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.config"), "# mine\nOCG_PORT=55001\n").unwrap();
        let config = config_in(dir.path(), &[]);
        let (first, source) = ensure_token(&config, "OCG_EMBEDDING_TOKEN").unwrap();
        assert_eq!(
            source,
            TokenSource::Generated(dir.path().join("env.config"))
        );
        assert_eq!(first.expose().len(), 64);
        let text = std::fs::read_to_string(dir.path().join("env.config")).unwrap();
        assert!(text.starts_with("# mine\nOCG_PORT=55001\n"), "{text}");
        assert!(text.contains(&format!("OCG_EMBEDDING_TOKEN={}", first.expose())));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("env.config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A program whose config was read before the token was written
        // finds it rather than making another.
        let (again, source) = ensure_token(&config, "OCG_EMBEDDING_TOKEN").unwrap();
        assert_eq!(again.expose(), first.expose());
        assert_eq!(source, TokenSource::Configured);
    }

    #[test]
    fn a_configured_token_is_used_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), &[("OCG_EMBEDDING_TOKEN", "from-env")]);
        let (token, source) = ensure_token(&config, "OCG_EMBEDDING_TOKEN").unwrap();
        assert_eq!(
            (token.expose(), source),
            ("from-env", TokenSource::Configured)
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env.config")).unwrap(),
            ""
        );
    }

    #[test]
    fn programs_starting_together_agree_on_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), &[]);
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        ensure_token(&config, "OCG_UI_TOKEN")
                            .unwrap()
                            .0
                            .expose()
                            .to_owned()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|t| t == &tokens[0]), "{tokens:?}");
    }

    #[test]
    fn rotating_replaces_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.config");
        let old = rotate_token(&path, "OCG_UI_TOKEN").unwrap();
        let new = rotate_token(&path, "OCG_UI_TOKEN").unwrap();
        assert_ne!(old.expose(), new.expose());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("OCG_UI_TOKEN={}\n", new.expose()));
    }
}

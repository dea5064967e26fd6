//! Config resolution shared by all four programs.
//!
//! Two stages, as in ripgrep's `LowArgs` → `HiArgs`:
//!
//! 1. [`RawConfig::resolve`] merges string settings from four layers, each
//!    overriding the one before: built-in defaults < the `env.config` file <
//!    the process environment < command-line flags. Every value remembers
//!    where it came from, so errors can say "`OCG_PORT` (env.config line 3)".
//! 2. [`Config::try_from`] validates the merged strings into typed fields.
//!    An unknown `OCG_*` key in the file or flags, or a malformed value, is an
//!    error naming the key.
//!
//! Libraries take a [`Config`] (or the part of it they need) and never read
//! the environment themselves. Keys this crate does not type (for later
//! features) stay readable through [`Config::raw`].

pub mod env_file;
mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use keys::{KEYS, KeySpec};

use env_file::EnvFile;

/// Why config could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A line of an env file is not `KEY=VALUE`.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for whole-file problems).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key is not a valid variable name.
    #[error("invalid key {0:?}")]
    InvalidKey(String),
    /// An `OCG_*` key nobody knows (likely a typo).
    #[error("unknown key {key} ({origin}){}", hint.as_ref().map(|h| format!("; did you mean {h}?")).unwrap_or_default())]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// The known key it most resembles.
        hint: Option<String>,
    },
    /// A value does not parse or is not allowed.
    #[error("invalid value for {key} ({origin}): {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// What is wrong.
        reason: String,
    },
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built in.
    Default,
    /// An env file, at a line.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// The process environment.
    Environment,
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Environment => f.write_str("environment"),
            Origin::Flag => f.write_str("command line"),
        }
    }
}

/// One merged setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show where they came from, not what they are.
        f.debug_struct("Setting")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Where settings come from, highest precedence last.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// An explicitly chosen config file (`--config`); must exist.
    pub file: Option<PathBuf>,
    /// The process environment (`std::env::vars()` in a binary).
    pub env: Vec<(String, String)>,
    /// Settings from command-line flags, as `(KEY, value)`.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// Sources with the current process environment.
    pub fn from_process_env() -> Self {
        Sources {
            env: std::env::vars().collect(),
            ..Default::default()
        }
    }

    /// Use `path` as the config file.
    pub fn with_file(mut self, path: Option<PathBuf>) -> Self {
        self.file = path;
        self
    }

    /// Add a flag setting when `value` is present.
    pub fn flag(mut self, key: &str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.flags.push((key.to_owned(), value.to_string()));
        }
        self
    }
}

/// Merged, unvalidated settings.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    settings: BTreeMap<String, Setting>,
    file: Option<PathBuf>,
}

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "env.config";

impl RawConfig {
    /// Merge defaults < file < environment < flags.
    ///
    /// The file is `sources.file` when given (it must exist), else `OCG_CONFIG`
    /// from the environment (must exist), else `./env.config` when it exists.
    /// The chosen path is made absolute so child processes read the same file.
    pub fn resolve(sources: &Sources) -> Result<Self, ConfigError> {
        let env_value = |key: &str| {
            sources
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let mut raw = RawConfig::default();
        let home = env_value("HOME").unwrap_or_else(|| "/root".into());
        for spec in KEYS {
            if let Some(default) = spec.default {
                raw.insert(spec.name, default.replace("$HOME", &home), Origin::Default);
            }
        }

        let explicit = sources
            .file
            .clone()
            .or_else(|| env_value("OCG_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(path) => Some(path),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            let path = absolute(&path);
            let parsed = EnvFile::read(&path)?;
            for assignment in parsed.assignments() {
                let origin = Origin::File {
                    path: path.clone(),
                    line: assignment.line,
                };
                check_known(&assignment.key, &origin)?;
                raw.insert(&assignment.key, assignment.value, origin);
            }
            raw.file = Some(path);
        }

        for (key, value) in &sources.env {
            if key.starts_with("OCG_") || keys::find(key).is_some() {
                raw.insert(key, value.clone(), Origin::Environment);
            }
        }
        for (key, value) in &sources.flags {
            check_known(key, &Origin::Flag)?;
            raw.insert(key, value.clone(), Origin::Flag);
        }
        Ok(raw)
    }

    fn insert(&mut self, key: &str, value: String, origin: Origin) {
        self.settings
            .insert(key.to_owned(), Setting { value, origin });
    }

    /// The merged setting of `key`. Empty values count as unset.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.get(key).filter(|s| !s.value.is_empty())
    }

    /// The config file that was read, as an absolute path.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Parse `key` with `parse`, turning failures into [`ConfigError::InvalidValue`].
    pub fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(setting) => {
                parse(&setting.value)
                    .map(Some)
                    .map_err(|reason| ConfigError::InvalidValue {
                        key: key.to_owned(),
                        origin: setting.origin.clone(),
                        reason,
                    })
            }
        }
    }

    /// Parse `key` as a number within `range`; a value outside it, or not a
    /// number, is [`ConfigError::InvalidValue`] naming the key.
    pub fn number_in<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display,
    {
        self.parse(key, |v| {
            v.trim()
                .parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "{v:?} is not a number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        })
    }

    fn required<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        self.parse(key, parse)?
            .ok_or_else(|| self.invalid(key, "must not be empty"))
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            origin: self
                .settings
                .get(key)
                .map_or(Origin::Default, |s| s.origin.clone()),
            reason: reason.into(),
        }
    }
}

fn check_known(key: &str, origin: &Origin) -> Result<(), ConfigError> {
    if key.starts_with("OCG_") && keys::find(key).is_none() {
        return Err(ConfigError::UnknownKey {
            key: key.to_owned(),
            origin: origin.clone(),
            hint: keys::closest(key).map(str::to_owned),
        });
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A value that must not be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, compared in time independent of
    /// where they differ.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.0.as_bytes())
    }

    /// A new random token: 32 bytes from the kernel's generator
    /// (`/dev/urandom`), hex-encoded (256 bits).
    pub fn generate() -> std::io::Result<Secret> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Secret(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// Equality in time independent of where the inputs differ (their lengths
/// are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Validated config of all OCG programs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Gateway bind address (`OCG_HOST`).
    pub host: IpAddr,
    /// Gateway port (`OCG_PORT`).
    pub port: u16,
    /// Whether a non-loopback `OCG_HOST` is allowed (`OCG_ALLOW_PUBLIC_BIND`).
    pub allow_public_bind: bool,
    /// The agent's Unix socket (`OCG_AGENT_SOCK`).
    pub agent_socket: PathBuf,
    /// Where pid files (and the embedding service's address file) live (`OCG_PID_DIR`).
    pub pid_dir: PathBuf,
    /// Where service logs go (`OCG_LOG_DIR`).
    pub log_dir: PathBuf,
    /// Database, indexes, models, workspace (`OCG_DATA_DIR`).
    pub data_dir: PathBuf,
    /// First port the embedding service tries (`OCG_EMBEDDING_PORT`).
    pub embedding_port: u16,
    /// Last port the embedding service tries (`OCG_EMBEDDING_PORT_MAX`).
    pub embedding_port_max: u16,
    /// Where the agent reaches the embedding service (`OCG_EMBEDDING_URL`);
    /// `None` means "read the address the service announced in the pid dir".
    pub embedding_url: Option<String>,
    /// The `llama-server` program (`LLAMA_SERVER_BIN`).
    pub llama_server_bin: Option<PathBuf>,
    /// The GGUF embedding model (`EMBEDDING_MODEL_PATH`).
    pub embedding_model_path: Option<PathBuf>,
    /// Fixed port for `llama-server` (`LLAMA_PORT`); otherwise 18000–19000.
    pub llama_port: Option<u16>,
    /// Seconds each service may take to become healthy (`OCG_START_TIMEOUT`).
    pub start_timeout_secs: u64,
    raw: RawConfig,
}

impl Config {
    /// Resolve and validate in one step.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        Config::try_from(RawConfig::resolve(sources)?)
    }

    /// The merged settings, for keys this struct does not type yet.
    pub fn raw(&self) -> &RawConfig {
        &self.raw
    }

    /// The config file that was read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.raw.file()
    }

    /// The file the embedding service announces its base URL in.
    pub fn embedding_addr_file(&self) -> PathBuf {
        self.pid_dir.join("ocg-embedding.addr")
    }

    /// The gateway's base URL as a client reaches it.
    pub fn gateway_url(&self) -> String {
        match self.host {
            IpAddr::V6(host) => format!("http://[{host}]:{}", self.port),
            IpAddr::V4(host) => format!("http://{host}:{}", self.port),
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let host: IpAddr = raw.required("OCG_HOST", |v| {
            v.parse().map_err(|_| format!("{v:?} is not an IP address"))
        })?;
        let allow_public_bind = raw
            .parse("OCG_ALLOW_PUBLIC_BIND", parse_bool)?
            .unwrap_or(false);
        if !host.is_loopback() && !allow_public_bind {
            return Err(raw.invalid(
                "OCG_HOST",
                format!(
                    "{host} is not a loopback address; set OCG_ALLOW_PUBLIC_BIND=true to bind it"
                ),
            ));
        }
        let embedding_port = raw.required("OCG_EMBEDDING_PORT", parse_port)?;
        let embedding_port_max = raw.required("OCG_EMBEDDING_PORT_MAX", parse_port)?;
        if embedding_port_max < embedding_port {
            return Err(raw.invalid(
                "OCG_EMBEDDING_PORT_MAX",
                format!("must not be below OCG_EMBEDDING_PORT ({embedding_port})"),
            ));
        }
        let embedding_url = raw.parse("OCG_EMBEDDING_URL", parse_http_url)?;
        let start_timeout_secs = raw.required("OCG_START_TIMEOUT", |v| {
            v.parse::<u64>()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .ok_or_else(|| format!("{v:?} is not a number of seconds from 1 to 3600"))
        })?;
        Ok(Config {
            host,
            port: raw.required("OCG_PORT", parse_port)?,
            allow_public_bind,
            agent_socket: raw.required("OCG_AGENT_SOCK", parse_path)?,
            pid_dir: raw.required("OCG_PID_DIR", parse_path)?,
            log_dir: raw.required("OCG_LOG_DIR", parse_path)?,
            data_dir: raw.required("OCG_DATA_DIR", parse_path)?,
            embedding_port,
            embedding_port_max,
            embedding_url,
            llama_server_bin: raw.parse("LLAMA_SERVER_BIN", parse_path)?,
            embedding_model_path: raw.parse("EMBEDDING_MODEL_PATH", parse_path)?,
            llama_port: raw.parse("LLAMA_PORT", parse_port)?,
            start_timeout_secs,
            raw,
        })
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

/// A TCP port from 1 to 65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{value:?} is not a port number (1-65535)"))
}

/// A filesystem path.
pub fn parse_path(value: &str) -> Result<PathBuf, String> {
    if value.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    Ok(PathBuf::from(value))
}

/// An `http://` or `https://` URL without credentials; a trailing `/` is dropped.
pub fn parse_http_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("{value:?} is not an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    if authority.contains('@') {
        return Err("credentials in URLs are not accepted".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests;

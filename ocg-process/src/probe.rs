//! Readiness and health probes: `GET /health` over TCP or a Unix socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ocg_core::{HealthReport, Readiness};
use tokio::process::Child;

use crate::ProcessError;

/// Where a health endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthTarget {
    /// A full `http://` URL.
    Url(String),
    /// A path served over a Unix socket.
    Unix {
        /// The socket.
        socket: PathBuf,
        /// The request path.
        path: String,
    },
}

impl HealthTarget {
    /// The target of `readiness`, reading an announced address when needed.
    /// `Ok(None)` for [`Readiness::Started`]; `Err` while an announced address
    /// is not there yet.
    pub fn of(readiness: &Readiness) -> Result<Option<Self>, String> {
        Ok(Some(match readiness {
            Readiness::Started => return Ok(None),
            Readiness::Http { url } => HealthTarget::Url(url.clone()),
            Readiness::AnnouncedHttp { addr_file, path } => {
                HealthTarget::Url(format!("{}{path}", read_announced(addr_file)?))
            }
            Readiness::UnixHttp { socket, path } => HealthTarget::Unix {
                socket: socket.clone(),
                path: path.clone(),
            },
        }))
    }
}

/// The base URL a service announced in `addr_file` (one line).
pub fn read_announced(addr_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(addr_file)
        .map_err(|e| format!("no address announced in {}: {e}", addr_file.display()))?;
    let url = text.trim();
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(format!("{} does not hold a URL", addr_file.display()))
    }
}

/// `GET` the health endpoint: the parsed report on a 2xx answer, otherwise
/// a short description of what failed.
pub async fn fetch_health(
    target: &HealthTarget,
    timeout: Duration,
) -> Result<HealthReport, String> {
    get_ok(target, timeout)
        .await?
        .json::<HealthReport>()
        .await
        .map_err(|e| format!("health answer is not a health report: {e}"))
}

/// `GET` the target and succeed on any 2xx answer (for programs such as
/// llama-server whose health body is their own).
pub async fn probe_ok(target: &HealthTarget, timeout: Duration) -> Result<(), String> {
    get_ok(target, timeout).await.map(drop)
}

async fn get_ok(target: &HealthTarget, timeout: Duration) -> Result<reqwest::Response, String> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy();
    let (client, url) = match target {
        HealthTarget::Url(url) => (builder, url.clone()),
        HealthTarget::Unix { socket, path } => {
            if !socket.exists() {
                return Err(format!("socket {} does not exist", socket.display()));
            }
            (
                builder.unix_socket(socket.as_path()),
                format!("http://localhost{path}"),
            )
        }
    };
    let client = client.build().map_err(|e| e.to_string())?;
    let response = client.get(&url).send().await.map_err(describe)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("health answered HTTP {status}"));
    }
    Ok(response)
}

fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused".into()
    } else {
        error.to_string()
    }
}

/// Wait until `child` (the service `name`) is ready, it exits, or `timeout`
/// passes.
pub(crate) async fn wait_ready(
    name: &str,
    readiness: &Readiness,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), ProcessError> {
    let start = Instant::now();
    let mut interval = Duration::from_millis(2);
    let mut last_error;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ProcessError::ExitedEarly {
                service: name.to_owned(),
                status: status.to_string(),
            });
        }
        match HealthTarget::of(readiness) {
            Ok(None) => return Ok(()),
            Ok(Some(target)) => match probe_ok(&target, Duration::from_secs(2)).await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = e,
            },
            Err(e) => last_error = e,
        }
        if start.elapsed() >= timeout {
            return Err(ProcessError::NotReady {
                service: name.to_owned(),
                timeout_secs: timeout.as_secs(),
                last_error,
            });
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_millis(50));
    }
}

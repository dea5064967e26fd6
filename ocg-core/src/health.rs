//! Health reports: what every service's `GET /health` answers.

use serde::{Deserialize, Serialize};

/// Overall or per-check state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything this service needs works.
    Ok,
    /// Something it depends on is still starting (a local model loading) and
    /// will be ready by itself.
    Starting,
    /// The service answers but something it depends on does not.
    Degraded,
    /// The service cannot do its job.
    Unhealthy,
}

/// One named check inside a [`HealthReport`] (e.g. `agent` inside the gateway's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What was checked.
    pub name: String,
    /// Its state.
    pub status: HealthStatus,
    /// Why it is not ok, or a short fact when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HealthCheck {
    /// An ok check.
    pub fn ok(name: impl Into<String>, detail: Option<String>) -> Self {
        HealthCheck {
            name: name.into(),
            status: HealthStatus::Ok,
            detail,
        }
    }

    /// A check of something still starting by itself.
    pub fn starting(name: impl Into<String>, detail: impl Into<String>) -> Self {
        HealthCheck {
            name: name.into(),
            status: HealthStatus::Starting,
            detail: Some(detail.into()),
        }
    }

    /// A failing check: the service is degraded by it.
    pub fn failing(name: impl Into<String>, detail: impl Into<String>) -> Self {
        HealthCheck {
            name: name.into(),
            status: HealthStatus::Degraded,
            detail: Some(detail.into()),
        }
    }
}

/// The answer of a service's `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `embedding`, `agent` or `gateway`.
    pub service: String,
    /// The worst of the checks (or the service's own state).
    pub status: HealthStatus,
    /// The service's version.
    pub version: String,
    /// The serving process.
    pub pid: u32,
    /// Seconds since the service started.
    pub uptime_secs: u64,
    /// What the service depends on, one check each.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

impl HealthReport {
    /// A report whose status is derived from `checks`: ok when all are ok.
    pub fn from_checks(
        service: impl Into<String>,
        version: impl Into<String>,
        uptime_secs: u64,
        checks: Vec<HealthCheck>,
    ) -> Self {
        let status = checks
            .iter()
            .map(|check| check.status)
            .fold(HealthStatus::Ok, worst);
        HealthReport {
            service: service.into(),
            status,
            version: version.into(),
            pid: std::process::id(),
            uptime_secs,
            checks,
        }
    }

    /// The failing checks as `name: detail` phrases, for one-line summaries.
    pub fn problems(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|check| check.status != HealthStatus::Ok)
            .map(|check| match &check.detail {
                Some(detail) => format!("{}: {detail}", check.name),
                None => check.name.clone(),
            })
            .collect()
    }
}

fn worst(a: HealthStatus, b: HealthStatus) -> HealthStatus {
    use HealthStatus::*;
    match (a, b) {
        (Unhealthy, _) | (_, Unhealthy) => Unhealthy,
        (Degraded, _) | (_, Degraded) => Degraded,
        (Starting, _) | (_, Starting) => Starting,
        _ => Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_worst_check() {
        let report = HealthReport::from_checks(
            "gateway",
            "0.1.0",
            5,
            vec![
                HealthCheck::ok("http", None),
                HealthCheck::failing("agent", "connection refused"),
            ],
        );
        assert_eq!(report.status, HealthStatus::Degraded);
        assert_eq!(report.problems(), vec!["agent: connection refused"]);
        let loading = HealthReport::from_checks(
            "agent",
            "0.1.0",
            1,
            vec![
                HealthCheck::ok("sessions", None),
                HealthCheck::starting("llm", "llama-server (chat) is loading"),
            ],
        );
        assert_eq!(loading.status, HealthStatus::Starting);
        let fine = HealthReport::from_checks("agent", "0.1.0", 0, vec![]);
        assert_eq!(fine.status, HealthStatus::Ok);
    }
}

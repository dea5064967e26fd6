//! The OCG stack: embedding, agent and gateway, started in that order and
//! stopped in reverse.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ocg_core::config::Origin;
use ocg_core::{
    Config, HealthReport, HealthStatus, ProcessSupervisor, Readiness, ServiceSpec, ServiceState,
    StopOutcome,
};
use serde::Serialize;

use crate::PidFileSupervisor;
use crate::probe::{HealthTarget, fetch_health};

/// The services in start order.
pub const SERVICES: [&str; 3] = ["embedding", "agent", "gateway"];

/// How a service is called in `ocg status`.
pub fn display_name(service: &str) -> &str {
    match service {
        "embedding" => "Embedding",
        "agent" => "Agent",
        "gateway" => "Gateway",
        other => other,
    }
}

/// A service that failed to start, with what its log said last.
#[derive(Debug)]
pub struct StartFailure {
    /// The service.
    pub service: String,
    /// Why.
    pub error: ocg_core::Error,
    /// The last lines of its log.
    pub log_tail: Vec<String>,
    /// Its log file.
    pub log_file: PathBuf,
}

impl std::fmt::Display for StartFailure {
    /// What `ocg start` prints when a service does not come up: the error,
    /// the last lines of its log, and that the rest was rolled back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "error: {}", self.error)?;
        writeln!(f, "last lines of {}:", self.log_file.display())?;
        for line in &self.log_tail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "stopped the services this start had started")
    }
}

/// What a stop did to `service`, one line as `ocg stop` prints it; `Err`
/// when it failed.
pub fn describe_stop(
    service: &str,
    outcome: &ocg_core::Result<StopOutcome>,
) -> Result<String, String> {
    let name = display_name(service);
    match outcome {
        Ok(StopOutcome::NotRunning) => Ok(format!("{name}: not running")),
        Ok(StopOutcome::StalePidFileRemoved { pid }) => Ok(format!(
            "{name}: removed stale pid file (PID {pid} it names has exited)"
        )),
        Ok(StopOutcome::Stopped {
            pid,
            signal,
            elapsed_ms,
        }) => Ok(format!(
            "{name}: stopped (PID {pid}, {signal}, {elapsed_ms} ms)"
        )),
        Err(error) => Err(format!("{name}: {error}")),
    }
}

/// The three services of one config, run by any [`ProcessSupervisor`].
#[derive(Clone)]
pub struct Stack {
    config: Config,
    bin_dir: PathBuf,
    supervisor: Arc<dyn ProcessSupervisor>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("bin_dir", &self.bin_dir)
            .field("pid_dir", &self.config.pid_dir)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// The stack of `config`, running the binaries found in `bin_dir` as
    /// detached processes with pid files ([`PidFileSupervisor`]).
    pub fn new(config: Config, bin_dir: impl Into<PathBuf>) -> Self {
        let supervisor = Arc::new(PidFileSupervisor::new(&config.pid_dir, &config.log_dir));
        Stack {
            config,
            bin_dir: bin_dir.into(),
            supervisor,
        }
    }

    /// Run the services with `supervisor` instead (another stop schedule,
    /// or a fake in tests).
    pub fn with_supervisor(mut self, supervisor: Arc<dyn ProcessSupervisor>) -> Self {
        self.supervisor = supervisor;
        self
    }

    /// The log file of `service`: `<log-dir>/ocg-<service>.log`.
    pub fn log_file(&self, service: &str) -> PathBuf {
        crate::log_file::path(&self.config.log_dir, service)
    }

    /// The spec of each service, in start order.
    ///
    /// Children get the config file as `OCG_CONFIG` and every setting that came
    /// from a command-line flag as an environment variable, so all four
    /// programs resolve the same config.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        let config = &self.config;
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(file) = config.file() {
            env.push(("OCG_CONFIG".into(), file.display().to_string()));
        }
        for spec in ocg_core::config::KEYS {
            if let Some(setting) = config.raw().get(spec.name) {
                if setting.origin == Origin::Flag {
                    env.push((spec.name.to_owned(), setting.value.clone()));
                }
            }
        }
        let timeout = Duration::from_secs(config.start_timeout_secs);
        let spec = |name: &str, readiness| ServiceSpec {
            name: name.to_owned(),
            program: self.bin_dir.join(format!("ocg-{name}")),
            args: Vec::new(),
            env: env.clone(),
            readiness,
            ready_timeout: timeout,
        };
        vec![
            spec(
                "embedding",
                Readiness::AnnouncedHttp {
                    addr_file: config.embedding_addr_file(),
                    path: "/health".into(),
                },
            ),
            spec(
                "agent",
                Readiness::UnixHttp {
                    socket: config.agent_socket.clone(),
                    path: "/health".into(),
                },
            ),
            spec(
                "gateway",
                Readiness::Http {
                    url: format!("{}/health", config.gateway_url()),
                },
            ),
        ]
    }

    /// Start the services in order, each healthy before the next. On failure,
    /// stop what this call started. Call [`stop`](Stack::stop) first: a
    /// service that is still running makes its start fail.
    pub async fn start(
        &self,
        mut on_started: impl FnMut(&str, u32),
    ) -> Result<(), Box<StartFailure>> {
        let specs = self.specs();
        for (index, spec) in specs.iter().enumerate() {
            match self.supervisor.start(spec).await {
                Ok(running) => on_started(&spec.name, running.pid),
                Err(error) => {
                    for started in specs[..index].iter().rev() {
                        let _ = self.supervisor.stop(&started.name, false).await;
                    }
                    let log_file = self.log_file(&spec.name);
                    return Err(Box::new(StartFailure {
                        service: spec.name.clone(),
                        error,
                        log_tail: crate::log_file::tail(&log_file, 20).unwrap_or_default(),
                        log_file,
                    }));
                }
            }
        }
        Ok(())
    }

    /// Stop gateway, agent, embedding (in that order).
    pub async fn stop(&self, force: bool) -> Vec<(String, ocg_core::Result<StopOutcome>)> {
        let mut outcomes = Vec::new();
        for name in SERVICES.iter().rev() {
            let outcome = self.supervisor.stop(name, force).await;
            outcomes.push(((*name).to_owned(), outcome));
        }
        // The embedding service removes its address file when it exits; a
        // killed one cannot, and a stale address must not be probed later.
        let _ = std::fs::remove_file(self.config.embedding_addr_file());
        outcomes
    }

    /// Process state and health of every service.
    pub async fn status(&self) -> StackStatus {
        let specs = self.specs();
        let mut services = Vec::new();
        for spec in &specs {
            let state = self
                .supervisor
                .state(&spec.name)
                .await
                .unwrap_or(ServiceState::Stopped);
            let health = match state {
                ServiceState::Running { .. } => Some(probe_health(&spec.readiness).await),
                _ => None,
            };
            services.push(ServiceStatus {
                name: spec.name.clone(),
                state,
                health,
            });
        }
        StackStatus { services }
    }

    /// After [`start`](Stack::start): wait until no service reports a
    /// dependency still starting (the local model loading), at most
    /// `timeout`. `waiting` is called about every 250 ms with the time so
    /// far and what is still starting. The status at the end.
    pub async fn wait_settled(
        &self,
        timeout: Duration,
        mut waiting: impl FnMut(Duration, &[String]),
    ) -> StackStatus {
        let started = std::time::Instant::now();
        loop {
            let status = self.status().await;
            let starting = status.starting();
            if starting.is_empty() || started.elapsed() >= timeout {
                return status;
            }
            waiting(started.elapsed(), &starting);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn probe_health(readiness: &Readiness) -> Result<HealthReport, String> {
    let target = HealthTarget::of(readiness)?.ok_or("no health endpoint")?;
    fetch_health(&target, Duration::from_secs(2)).await
}

/// State and health of one service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Process state.
    #[serde(flatten)]
    pub state: ServiceState,
    /// Its health answer, or why there is none (absent when not running).
    #[serde(
        serialize_with = "serialize_health",
        skip_serializing_if = "Option::is_none"
    )]
    pub health: Option<Result<HealthReport, String>>,
}

fn serialize_health<S: serde::Serializer>(
    health: &Option<Result<HealthReport, String>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(1))?;
    match health {
        Some(Ok(report)) => map.serialize_entry("report", report)?,
        Some(Err(error)) => map.serialize_entry("error", error)?,
        None => {}
    }
    map.end()
}

/// What `ocg status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// One entry per service, in start order.
    pub services: Vec<ServiceStatus>,
}

impl StackStatus {
    /// What is wrong, one phrase each; empty when all run and are healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for service in &self.services {
            match (&service.state, &service.health) {
                (ServiceState::Running { .. }, Some(Ok(report))) => {
                    if report.status != HealthStatus::Ok {
                        let detail = report.problems().join(", ");
                        problems.push(format!("{}: {detail}", service.name));
                    }
                }
                (ServiceState::Running { .. }, Some(Err(error))) => {
                    problems.push(format!("{}: {error}", service.name));
                }
                (ServiceState::StalePidFile { .. }, _) => {
                    problems.push(format!("{}: stale pid file", service.name));
                }
                _ => problems.push(format!("{}: not running", service.name)),
            }
        }
        problems
    }

    /// What is still starting by itself, one phrase each.
    pub fn starting(&self) -> Vec<String> {
        self.services
            .iter()
            .filter_map(|service| match &service.health {
                Some(Ok(report)) if report.status == HealthStatus::Starting => Some(format!(
                    "{}: {}",
                    service.name,
                    report.problems().join(", ")
                )),
                _ => None,
            })
            .collect()
    }

    /// Whether all services run and report ok.
    pub fn is_healthy(&self) -> bool {
        self.problems().is_empty()
    }

    /// The documented text form: one line per service, then `Health: …`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for service in &self.services {
            let name = display_name(&service.name);
            let line = match (&service.state, &service.health) {
                (ServiceState::Running { pid }, Some(Err(error))) => {
                    format!("{name}: unhealthy: {error} (PID {pid})")
                }
                (ServiceState::Running { pid }, _) => format!("{name}: running (PID {pid})"),
                (ServiceState::StalePidFile { pid }, _) => {
                    format!("{name}: stale pid file (PID {pid} is not running)")
                }
                (ServiceState::Stopped, _) => format!("{name}: stopped"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        let problems = self.problems();
        if problems.is_empty() {
            out.push_str("Health: ok\n");
        } else {
            out.push_str(&format!("Health: {}\n", problems.join("; ")));
        }
        out
    }

    /// The JSON form (`ocg status --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "services": self.services,
            "healthy": self.is_healthy(),
            "problems": self.problems(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::HealthCheck;
    use ocg_core::config::Sources;
    use ocg_core::testing::FakeSupervisor;

    fn stack_on(supervisor: Arc<FakeSupervisor>) -> (Stack, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let sources = Sources {
            file: None,
            env: vec![
                ("OCG_PID_DIR".into(), path("pids")),
                ("OCG_LOG_DIR".into(), path("logs")),
                ("OCG_DATA_DIR".into(), path("data")),
                ("OCG_AGENT_SOCK".into(), path("agent.sock")),
            ],
            flags: Vec::new(),
        };
        let config = Config::load(&sources).unwrap();
        let stack = Stack::new(config, dir.path().join("bin")).with_supervisor(supervisor);
        (stack, dir)
    }

    #[tokio::test]
    async fn starts_in_order_and_stops_in_reverse() {
        let supervisor = Arc::new(FakeSupervisor::new());
        let (stack, _dir) = stack_on(supervisor.clone());
        let mut started = Vec::new();
        stack
            .start(|name, _pid| started.push(name.to_owned()))
            .await
            .unwrap();
        assert_eq!(started, SERVICES);
        let stopped = stack.stop(false).await;
        assert!(
            stopped
                .iter()
                .all(|(_, outcome)| matches!(outcome, Ok(StopOutcome::Stopped { .. })))
        );
        assert_eq!(
            supervisor.calls(),
            [
                "start embedding",
                "start agent",
                "start gateway",
                "stop gateway",
                "stop agent",
                "stop embedding",
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_start_stops_what_it_started_and_names_the_service() {
        let supervisor = Arc::new(FakeSupervisor::new());
        supervisor.fail_start("agent");
        let (stack, _dir) = stack_on(supervisor.clone());
        let failure = stack.start(|_, _| {}).await.unwrap_err();
        assert_eq!(failure.service, "agent");
        assert!(failure.error.to_string().contains("did not become ready"));
        assert!(failure.log_file.ends_with("logs/ocg-agent.log"));
        assert_eq!(
            supervisor.calls(),
            ["start embedding", "start agent", "stop embedding"],
            "the gateway is never started, the embedding service is rolled back"
        );
        let status = stack.status().await;
        assert!(
            status
                .services
                .iter()
                .all(|s| s.state == ServiceState::Stopped)
        );
    }

    fn report(status: HealthStatus, checks: Vec<HealthCheck>) -> HealthReport {
        HealthReport {
            service: "x".into(),
            status,
            version: "0.1.0".into(),
            pid: 1,
            uptime_secs: 1,
            checks,
        }
    }

    fn running(name: &str, pid: u32, health: Result<HealthReport, String>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state: ServiceState::Running { pid },
            health: Some(health),
        }
    }

    #[test]
    fn renders_the_documented_healthy_form() {
        let status = StackStatus {
            services: vec![
                running("embedding", 1234, Ok(report(HealthStatus::Ok, vec![]))),
                running("agent", 1235, Ok(report(HealthStatus::Ok, vec![]))),
                running("gateway", 1236, Ok(report(HealthStatus::Ok, vec![]))),
            ],
        };
        assert_eq!(
            status.render(),
            "Embedding: running (PID 1234)\nAgent: running (PID 1235)\n\
             Gateway: running (PID 1236)\nHealth: ok\n"
        );
        assert!(status.is_healthy());
        assert_eq!(status.to_json()["healthy"], true);
        assert_eq!(status.to_json()["services"][0]["state"], "running");
    }

    #[test]
    fn renders_each_unhappy_state() {
        let status = StackStatus {
            services: vec![
                ServiceStatus {
                    name: "embedding".into(),
                    state: ServiceState::StalePidFile { pid: 77 },
                    health: None,
                },
                running("agent", 5, Err("connection refused".into())),
                running(
                    "gateway",
                    6,
                    Ok(report(
                        HealthStatus::Degraded,
                        vec![HealthCheck::failing("agent", "unreachable")],
                    )),
                ),
            ],
        };
        assert_eq!(
            status.render(),
            "Embedding: stale pid file (PID 77 is not running)\n\
             Agent: unhealthy: connection refused (PID 5)\n\
             Gateway: running (PID 6)\n\
             Health: embedding: stale pid file; agent: connection refused; gateway: agent: unreachable\n"
        );
        assert!(!status.is_healthy());
        let stopped = StackStatus {
            services: vec![ServiceStatus {
                name: "gateway".into(),
                state: ServiceState::Stopped,
                health: None,
            }],
        };
        assert_eq!(
            stopped.render(),
            "Gateway: stopped\nHealth: gateway: not running\n"
        );
    }
}

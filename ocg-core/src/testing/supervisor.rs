use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::agent::lock;
use crate::{
    Error, ProcessSupervisor, Result, RunningService, ServiceSpec, ServiceState, StopOutcome,
};

#[derive(Debug, Default)]
struct Table {
    next_pid: u32,
    running: BTreeMap<String, u32>,
    failing: BTreeSet<String>,
    log: Vec<String>,
}

/// A [`ProcessSupervisor`] that keeps its process table in memory.
///
/// Records every call as `start <name>` / `stop <name>` in
/// [`calls`](FakeSupervisor::calls); [`fail_start`](FakeSupervisor::fail_start)
/// makes a service fail readiness.
#[derive(Debug, Default)]
pub struct FakeSupervisor {
    table: Mutex<Table>,
}

impl FakeSupervisor {
    /// An empty process table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make starting `name` fail as if it never became ready.
    pub fn fail_start(&self, name: &str) {
        lock(&self.table).failing.insert(name.to_owned());
    }

    /// Calls made so far, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.table).log.clone()
    }
}

#[async_trait]
impl ProcessSupervisor for FakeSupervisor {
    async fn start(&self, spec: &ServiceSpec) -> Result<RunningService> {
        let mut table = lock(&self.table);
        table.log.push(format!("start {}", spec.name));
        if table.failing.contains(&spec.name) {
            return Err(Error::Timeout(format!(
                "{} did not become ready within {:?}",
                spec.name, spec.ready_timeout
            )));
        }
        table.next_pid += 1;
        let pid = 1000 + table.next_pid;
        table.running.insert(spec.name.clone(), pid);
        Ok(RunningService { pid })
    }

    async fn stop(&self, name: &str, force: bool) -> Result<StopOutcome> {
        let mut table = lock(&self.table);
        table.log.push(format!("stop {name}"));
        Ok(match table.running.remove(name) {
            Some(pid) => StopOutcome::Stopped {
                pid,
                signal: if force { "SIGKILL" } else { "SIGTERM" }.into(),
                elapsed_ms: 0,
            },
            None => StopOutcome::NotRunning,
        })
    }

    async fn state(&self, name: &str) -> Result<ServiceState> {
        Ok(match lock(&self.table).running.get(name) {
            Some(&pid) => ServiceState::Running { pid },
            None => ServiceState::Stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Readiness;
    use crate::testing::block_on;

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            program: "/bin/true".into(),
            args: vec![],
            env: vec![],
            readiness: Readiness::Started,
            ready_timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn tracks_starts_stops_and_failures() {
        let supervisor = FakeSupervisor::new();
        let running = block_on(supervisor.start(&spec("agent"))).unwrap();
        assert_eq!(
            block_on(supervisor.state("agent")).unwrap(),
            ServiceState::Running { pid: running.pid }
        );
        supervisor.fail_start("gateway");
        assert!(block_on(supervisor.start(&spec("gateway"))).is_err());
        assert!(matches!(
            block_on(supervisor.stop("agent", false)).unwrap(),
            StopOutcome::Stopped { .. }
        ));
        assert_eq!(
            block_on(supervisor.stop("agent", false)).unwrap(),
            StopOutcome::NotRunning
        );
        assert_eq!(
            supervisor.calls(),
            ["start agent", "start gateway", "stop agent", "stop agent"]
        );
    }
}

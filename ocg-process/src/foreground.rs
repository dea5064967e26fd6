//! Staying attached: restart crashed services, stop all on request.

use std::future::Future;
use std::time::Instant;

use ocg_core::ServiceSpec;
use tokio::process::Child;
use tokio::sync::watch;

use crate::restart::{Backoff, RestartPolicy};
use crate::{PidFileSupervisor, ProcessError};

/// Starts services in order, keeps them running, and stops them in reverse
/// order when told to.
#[derive(Debug, Clone)]
pub struct ForegroundSupervisor {
    supervisor: PidFileSupervisor,
    policy: RestartPolicy,
}

impl ForegroundSupervisor {
    /// Supervise with `supervisor`'s pid and log files.
    pub fn new(supervisor: PidFileSupervisor, policy: RestartPolicy) -> Self {
        ForegroundSupervisor { supervisor, policy }
    }

    /// Start `specs` in order (each ready before the next), restart any that
    /// exits, and when `shutdown` completes stop them in reverse order and
    /// return. If a service fails to start, those already started are
    /// stopped and the error is returned.
    pub async fn run(
        &self,
        specs: &[ServiceSpec],
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ProcessError> {
        let mut children = Vec::new();
        for spec in specs {
            match self.supervisor.launch(spec).await {
                Ok((child, running)) => {
                    tracing::info!(service = %spec.name, pid = running.pid, "started");
                    children.push(child);
                }
                Err(error) => {
                    self.stop_all(&specs[..children.len()]).await;
                    return Err(error);
                }
            }
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let keepers: Vec<_> = specs
            .iter()
            .cloned()
            .zip(children)
            .map(|(spec, child)| {
                tokio::spawn(keep_alive(
                    self.supervisor.clone(),
                    self.policy,
                    spec,
                    child,
                    stop_rx.clone(),
                ))
            })
            .collect();

        shutdown.await;
        tracing::info!("stopping services");
        let _ = stop_tx.send(true);
        self.stop_all(specs).await;
        for keeper in keepers {
            let _ = keeper.await;
        }
        Ok(())
    }

    async fn stop_all(&self, specs: &[ServiceSpec]) {
        for spec in specs.iter().rev() {
            match self.supervisor.stop_service(&spec.name, false).await {
                Ok(outcome) => tracing::info!(service = %spec.name, ?outcome, "stopped"),
                Err(error) => tracing::error!(service = %spec.name, %error, "stop failed"),
            }
        }
    }
}

async fn keep_alive(
    supervisor: PidFileSupervisor,
    policy: RestartPolicy,
    spec: ServiceSpec,
    child: Child,
    mut stop: watch::Receiver<bool>,
) {
    let mut child = Some(child);
    let mut backoff = Backoff::new(policy);
    let mut started_at = Instant::now();
    loop {
        if let Some(running) = child.as_mut() {
            tokio::select! {
                status = running.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    if *stop.borrow() {
                        return;
                    }
                    tracing::warn!(service = %spec.name, %status, "exited unexpectedly");
                }
                _ = stop.changed() => {
                    // Stopping: the signals come from `stop_all`; reap the child.
                    let _ = running.wait().await;
                    return;
                }
            }
        }
        let Some(delay) = backoff.after_exit(started_at.elapsed()) else {
            tracing::error!(
                service = %spec.name,
                crashes = backoff.quick_crashes(),
                "crashed too often in a row; not restarting it (see its log)"
            );
            return;
        };
        tracing::warn!(service = %spec.name, delay_ms = delay.as_millis() as u64, "restarting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        started_at = Instant::now();
        match supervisor.launch(&spec).await {
            Ok((mut restarted, _)) if *stop.borrow() => {
                // Shutdown began while this restart was in flight.
                let _ = supervisor.stop_service(&spec.name, false).await;
                let _ = restarted.wait().await;
                return;
            }
            Ok((restarted, running)) => {
                tracing::info!(service = %spec.name, pid = running.pid, "restarted");
                child = Some(restarted);
            }
            Err(error) => {
                tracing::error!(service = %spec.name, %error, "restart failed");
                child = None;
            }
        }
    }
}

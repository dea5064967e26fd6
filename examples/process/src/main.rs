//! Run with: cargo run -p example-process
//!
//! Supervise a program the way `ocg` supervises its services: its own process
//! group, a pid file with the process start time, a 0600 log, and a stop that
//! escalates SIGTERM → SIGINT → SIGKILL.

use std::time::Duration;

use ocg_core::{ProcessSupervisor, Readiness, ServiceSpec};
use ocg_process::PidFileSupervisor;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("ocg-example-{}", std::process::id()));
    let supervisor = PidFileSupervisor::new(dir.join("pids"), dir.join("logs"));
    let spec = ServiceSpec {
        name: "sleeper".into(),
        program: "/bin/sh".into(),
        args: vec!["-c".into(), "echo ready; exec sleep 60".into()],
        env: vec![],
        readiness: Readiness::Started,
        ready_timeout: Duration::from_secs(5),
    };
    let running = supervisor.start(&spec).await?;
    println!(
        "started PID {} ({:?})",
        running.pid,
        supervisor.state("sleeper").await?
    );
    println!(
        "pid file: {}",
        std::fs::read_to_string(supervisor.pid_file("sleeper"))?.trim()
    );
    let outcome = supervisor.stop("sleeper", false).await?;
    println!("stopped: {outcome:?}");
    println!("log: {:?}", supervisor.log_tail("sleeper", 5));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

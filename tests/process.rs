//! `PidFileSupervisor` against real child processes.

use std::time::{Duration, Instant};

use ocg_core::{Readiness, ServiceSpec, ServiceState, StopOutcome};
use ocg_process::{PidFileSupervisor, PidRecord, StopSchedule};
use ocg_tests::{alive, wait_until};

fn supervisor(dir: &tempfile::TempDir) -> PidFileSupervisor {
    PidFileSupervisor::new(dir.path().join("pids"), dir.path().join("logs")).with_stop_schedule(
        StopSchedule {
            grace: Duration::from_millis(400),
            kill_wait: Duration::from_secs(2),
        },
    )
}

fn shell(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![],
        readiness: Readiness::Started,
        ready_timeout: Duration::from_secs(5),
    }
}

/// A shell that ignores `signals`, then says it is ready, then waits: the
/// test stops it only once the traps are in place (a stop that arrives
/// before `trap` runs would end it at once).
async fn start_trapping(
    supervisor: &PidFileSupervisor,
    dir: &tempfile::TempDir,
    name: &str,
    signals: &str,
    extra: &str,
) -> ocg_core::RunningService {
    let ready = dir.path().join(format!("{name}.ready"));
    let script = format!(
        "trap '' {signals}; {extra}touch '{}'; while :; do sleep 0.05; done",
        ready.display()
    );
    let (_child, running) = supervisor.launch(&shell(name, &script)).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready.exists()));
    running
}

fn signal_of(outcome: &StopOutcome) -> &str {
    match outcome {
        StopOutcome::Stopped { signal, .. } => signal,
        other => panic!("expected a stop, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cooperative_child_stops_at_the_first_signal() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    let (_child, running) = supervisor
        .launch(&shell("coop", "exec sleep 60"))
        .await
        .unwrap();
    assert_eq!(
        supervisor.service_state("coop").unwrap(),
        ServiceState::Running { pid: running.pid }
    );
    // Stopped by the first signal: no escalation, so no grace period waited.
    let outcome = supervisor.stop_service("coop", false).await.unwrap();
    assert_eq!(signal_of(&outcome), "SIGTERM");
    assert!(wait_until(Duration::from_secs(1), || !alive(running.pid)));
    assert!(!supervisor.pid_file("coop").exists());
}

#[tokio::test]
async fn sigterm_ignored_escalates_to_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    start_trapping(&supervisor, &dir, "stubborn", "TERM", "").await;
    let outcome = supervisor.stop_service("stubborn", false).await.unwrap();
    assert_eq!(signal_of(&outcome), "SIGINT");
}

#[tokio::test]
async fn sigterm_and_sigint_ignored_escalate_to_sigkill_on_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    // The grandchild ignores both signals too (ignored dispositions survive exec).
    let running = start_trapping(&supervisor, &dir, "deaf", "TERM INT", "sleep 60 & ").await;
    let started = Instant::now();
    let outcome = supervisor.stop_service("deaf", false).await.unwrap();
    assert_eq!(signal_of(&outcome), "SIGKILL");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "both grace periods"
    );
    assert!(wait_until(Duration::from_secs(1), || !alive(running.pid)));
    let pgid = i32::try_from(running.pid).unwrap();
    assert!(
        !ocg_process::proc_stat::group_alive(pgid),
        "no member survives"
    );
}

#[tokio::test]
async fn force_sends_sigkill_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    // It would log the gentle signals it got; force sends none of them.
    let got = dir.path().join("forced.signals");
    let logging = format!(
        "trap 'echo TERM >> {0}' TERM; trap 'echo INT >> {0}' INT; ",
        got.display()
    );
    start_trapping(&supervisor, &dir, "forced", "HUP", &logging).await;
    let outcome = supervisor.stop_service("forced", true).await.unwrap();
    assert_eq!(signal_of(&outcome), "SIGKILL");
    assert!(
        !got.exists(),
        "force sent {:?}",
        std::fs::read_to_string(&got)
    );
}

#[tokio::test]
async fn a_reused_pid_is_never_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    std::fs::create_dir_all(dir.path().join("pids")).unwrap();
    // A live process that OCG did not start, recorded with another start time.
    let mut bystander = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let real = PidRecord::of(bystander.id()).unwrap();
    PidRecord {
        pid: real.pid,
        start_time: real.start_time + 1,
    }
    .write(&supervisor.pid_file("agent"))
    .unwrap();
    assert_eq!(
        supervisor.service_state("agent").unwrap(),
        ServiceState::StalePidFile { pid: real.pid }
    );
    let outcome = supervisor.stop_service("agent", true).await.unwrap();
    assert_eq!(outcome, StopOutcome::StalePidFileRemoved { pid: real.pid });
    assert!(alive(real.pid), "the bystander was not touched");
    assert!(!supervisor.pid_file("agent").exists());
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[tokio::test]
async fn a_dead_pid_is_a_stale_pid_file_and_stop_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let record = PidRecord::of(gone.id());
    gone.wait().unwrap();
    std::fs::create_dir_all(dir.path().join("pids")).unwrap();
    PidRecord {
        pid: gone.id(),
        start_time: record.map_or(1, |r| r.start_time),
    }
    .write(&supervisor.pid_file("gateway"))
    .unwrap();
    assert!(matches!(
        supervisor.service_state("gateway").unwrap(),
        ServiceState::StalePidFile { .. }
    ));
    assert!(matches!(
        supervisor.stop_service("gateway", false).await.unwrap(),
        StopOutcome::StalePidFileRemoved { .. }
    ));
    assert_eq!(
        supervisor.stop_service("gateway", false).await.unwrap(),
        StopOutcome::NotRunning
    );
}

#[tokio::test]
async fn a_child_that_exits_early_fails_readiness_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    let mut spec = shell("crashy", "echo 'fatal: bad config' >&2; exit 3");
    spec.readiness = Readiness::Http {
        url: format!("http://127.0.0.1:{}/health", ocg_tests::free_port()),
    };
    // The exit is noticed, not the readiness timeout waited out: the error
    // says the child exited.
    let error = supervisor.launch(&spec).await.unwrap_err();
    assert!(
        error.to_string().contains("exited before it became ready"),
        "{error}"
    );
    assert!(!supervisor.pid_file("crashy").exists());
    let log = supervisor.log_tail("crashy", 5).join("\n");
    assert!(log.contains("fatal: bad config"), "{log}");
}

#[tokio::test]
async fn readiness_times_out_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let supervisor = supervisor(&dir);
    let mut spec = shell("silent", "exec sleep 60");
    spec.readiness = Readiness::Http {
        url: format!("http://127.0.0.1:{}/health", ocg_tests::free_port()),
    };
    spec.ready_timeout = Duration::from_millis(300);
    let error = supervisor.launch(&spec).await.unwrap_err();
    assert!(
        error.to_string().contains("did not become ready"),
        "{error}"
    );
    assert!(!supervisor.pid_file("silent").exists());
}

//! The four real binaries: `ocg start|stop|status|restart|logs` and the
//! services alone.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use ocg_tests::{Install, KillOnDrop, alive, exists, http_get, unix_http_get, wait_until};

#[test]
fn start_status_stop_follow_the_documented_process_model() {
    let install = Install::new();
    let start = install.ocg(&["start"]).ok();
    let out = start.stdout();
    let order: Vec<usize> = ["Embedding: started", "Agent: started", "Gateway: started"]
        .iter()
        .map(|s| {
            out.find(s)
                .unwrap_or_else(|| panic!("{s} missing in {out}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "start order: {out}");
    assert!(out.contains(&install.gateway_url()), "{out}");

    let pids: Vec<u32> = ["embedding", "agent", "gateway"]
        .iter()
        .map(|s| install.recorded_pid(s).unwrap())
        .collect();
    let status = install.ocg(&["status"]).ok();
    assert_eq!(
        status.stdout(),
        format!(
            "Embedding: running (PID {})\nAgent: running (PID {})\nGateway: running (PID {})\nHealth: ok\n",
            pids[0], pids[1], pids[2]
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&install.ocg(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["services"][1]["pid"], pids[1]);
    assert_eq!(
        json["services"][2]["health"]["report"]["checks"][0]["name"],
        "agent"
    );

    // Each service leads its own session and process group.
    for pid in &pids {
        let stat = ocg_process::proc_stat::read(*pid).unwrap();
        assert_eq!(stat.pgrp, i32::try_from(*pid).unwrap());
        assert_eq!(
            nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(stat.pgrp)))
                .unwrap()
                .as_raw(),
            stat.pgrp
        );
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&install.socket()), 0o600);
    assert_eq!(mode(&install.path("logs/ocg-gateway.log")), 0o600);
    let (code, body) = http_get(&format!("{}/health", install.gateway_url())).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"service\":\"gateway\""), "{body}");

    let stop = install.ocg(&["stop"]).ok();
    let out = stop.stdout();
    let order: Vec<usize> = ["Gateway: stopped", "Agent: stopped", "Embedding: stopped"]
        .iter()
        .map(|s| {
            out.find(s)
                .unwrap_or_else(|| panic!("{s} missing in {out}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stop order: {out}");
    assert!(
        out.contains("SIGTERM"),
        "cooperative services stop at SIGTERM: {out}"
    );
    for pid in pids {
        assert!(wait_until(Duration::from_secs(2), || !alive(pid)));
    }
    assert!(!exists(&install.socket()), "agent removed its socket");
    assert!(!exists(&install.pid_dir().join("ocg-agent.pid")));
    assert!(!exists(&install.pid_dir().join("ocg-embedding.addr")));

    let stopped = install.ocg(&["status"]);
    assert_eq!(stopped.code(), 1);
    assert!(
        stopped
            .stdout()
            .starts_with("Embedding: stopped\nAgent: stopped\nGateway: stopped\n")
    );
    let again = install.ocg(&["stop"]).ok();
    assert!(
        again.stdout().contains("Gateway: not running"),
        "{}",
        again.stdout()
    );
}

#[test]
fn start_twice_replaces_the_running_services() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    let first = install.recorded_pid("agent").unwrap();
    let second_start = install.ocg(&["start"]).ok();
    assert!(
        second_start.stdout().contains("Agent: stopped"),
        "{}",
        second_start.stdout()
    );
    let second = install.recorded_pid("agent").unwrap();
    assert_ne!(first, second);
    assert!(wait_until(Duration::from_secs(2), || !alive(first)));
    install.ocg(&["status"]).ok();

    let restart = install.ocg(&["restart"]).ok();
    assert!(restart.stdout().contains("Gateway: started"));
    assert_ne!(install.recorded_pid("agent").unwrap(), second);
    install.ocg(&["status"]).ok();
}

#[test]
fn a_gateway_that_cannot_bind_rolls_the_start_back() {
    let install = Install::new();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", install.gateway_port)).unwrap();
    let start = install.ocg(&["start"]);
    assert_ne!(start.code(), 0);
    let err = start.stderr();
    assert!(err.contains("gateway"), "{err}");
    assert!(err.contains("last lines of"), "{err}");
    assert!(
        err.contains("Address already in use") || err.contains("address in use"),
        "{err}"
    );
    let started: Vec<u32> = start
        .stdout()
        .lines()
        .filter_map(|l| l.split("(PID ").nth(1)?.trim_end_matches(')').parse().ok())
        .collect();
    assert_eq!(
        started.len(),
        2,
        "embedding and agent had started: {}",
        start.stdout()
    );
    for pid in started {
        assert!(
            wait_until(Duration::from_secs(2), || !alive(pid)),
            "{pid} left running"
        );
    }
    for service in ["embedding", "agent", "gateway"] {
        assert_eq!(install.recorded_pid(service), None);
    }
}

#[test]
fn status_tells_stale_and_unhealthy_states() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    let agent = install.recorded_pid("agent").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(2), || !alive(agent)));
    let status = install.ocg(&["status"]);
    assert_eq!(status.code(), 1);
    let out = status.stdout();
    assert!(
        out.contains(&format!(
            "Agent: stale pid file (PID {agent} is not running)"
        )),
        "{out}"
    );
    assert!(out.contains("Gateway: running"), "{out}");
    assert!(
        out.contains("Health: agent: stale pid file; gateway: agent:"),
        "{out}"
    );
    let stop = install.ocg(&["stop"]).ok();
    assert!(
        stop.stdout().contains("Agent: removed stale pid file"),
        "{}",
        stop.stdout()
    );
}

#[test]
fn second_instances_are_refused() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    for service in ["agent", "gateway", "embedding"] {
        let binary = format!("ocg-{service}");
        let run = install.command(&binary).output().unwrap();
        assert!(!run.status.success(), "{binary} started twice");
        let err = String::from_utf8_lossy(&run.stderr);
        let owner = install.recorded_pid(service).unwrap();
        assert!(
            err.contains("owned by another process") && err.contains(&format!("PID {owner}")),
            "{binary}: {err}"
        );
    }
    install.ocg(&["status"]).ok();
}

#[test]
fn services_run_alone_with_the_same_config_and_shut_down_cleanly() {
    let install = Install::new();
    std::fs::write(
        install.path("env.config"),
        format!(
            "# written by the test\nOCG_AGENT_SOCK={}\n",
            install.path("alone.sock").display()
        ),
    )
    .unwrap();
    let spawn = |name: &str| {
        let log = std::fs::File::create(install.path(&format!("{name}.stderr"))).unwrap();
        KillOnDrop(
            install
                .command(name)
                .env_remove("OCG_AGENT_SOCK")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let mut embedding = spawn("ocg-embedding");
    let addr_file = install.pid_dir().join("ocg-embedding.addr");
    assert!(wait_until(Duration::from_secs(5), || exists(&addr_file)));
    let mut agent = spawn("ocg-agent");
    let socket = install.path("alone.sock");
    assert!(
        wait_until(Duration::from_secs(5), || exists(&socket)),
        "env.config names the socket"
    );

    // The socket exists from the bind; the agent answers once it has set up
    // (store, tools, sandbox probe), which a loaded machine makes slow.
    let mut answer = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            answer = unix_http_get(&socket, "/health");
            answer.is_some()
        }),
        "the agent answers on its socket"
    );
    let (code, body) = answer.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"service\":\"agent\""), "{body}");
    assert!(
        body.contains("{\"name\":\"embedding\",\"status\":\"ok\"}"),
        "the agent found the embedding service through its announced address: {body}"
    );

    for (name, child) in [("ocg-agent", &mut agent), ("ocg-embedding", &mut embedding)] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        let log =
            std::fs::read_to_string(install.path(&format!("{name}.stderr"))).unwrap_or_default();
        assert!(
            status.success(),
            "{name}: graceful exit on SIGTERM, got {status}:\n{log}"
        );
    }
    assert!(!exists(&socket), "socket removed");
    assert!(!exists(&addr_file), "address withdrawn");
}

#[test]
fn foreground_restarts_a_killed_service_and_stops_all_on_sigterm() {
    let install = Install::new();
    let ocg = install
        .command("ocg")
        .args(["start", "--foreground"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || install.ocg(&["status"]).code()
            == 0),
        "foreground start became healthy"
    );
    let agent = install.recorded_pid("agent").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || {
            install.recorded_pid("agent").is_some_and(|p| p != agent)
                && install.ocg(&["status"]).code() == 0
        }),
        "agent restarted: {}",
        install.ocg(&["status"]).stdout()
    );
    let pids: Vec<u32> = ["embedding", "agent", "gateway"]
        .iter()
        .map(|s| install.recorded_pid(s).unwrap())
        .collect();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(ocg.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let output = ocg.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("restarting"), "{log}");
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(2), || !alive(pid)),
            "{pid} survived"
        );
    }
    assert_eq!(install.recorded_pid("gateway"), None);
}

#[test]
fn logs_prints_the_tail_and_rejects_unknown_services() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    let logs = install.ocg(&["logs", "gateway", "-n", "5"]).ok();
    assert!(
        logs.stdout().contains("gateway listening"),
        "{}",
        logs.stdout()
    );
    let bad = install.ocg(&["logs", "nonsense"]);
    assert_eq!(bad.code(), 2);
    let version = install.ocg(&["version"]).ok();
    assert!(version.stdout().starts_with("ocg "));
}

#[test]
fn a_malformed_config_is_a_clear_error() {
    let install = Install::new();
    std::fs::write(
        install.path("env.config"),
        "# c\nOCG_ALLOW_PUBLIC_BIND=maybe\n",
    )
    .unwrap();
    let start = install.ocg(&["start"]);
    assert_eq!(start.code(), 1);
    let err = start.stderr();
    assert!(
        err.contains("OCG_ALLOW_PUBLIC_BIND") && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(install.recorded_pid("embedding"), None, "nothing started");
}

#[test]
fn everything_an_install_writes_is_private_and_an_older_install_is_tightened() {
    use ocg_tests::fake_llm::{self, Script};
    let vendor = fake_llm::start_openai();
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OPENAI_API_KEY", "sk-test-secret");
    // An install from before: world-readable data dir and database.
    let data = install.path("data");
    std::fs::create_dir_all(data.join("workspace")).unwrap();
    std::fs::write(data.join("ocg.db"), b"").unwrap();
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(&data, 0o755);
    set(&data.join("ocg.db"), 0o644);
    set(&data.join("workspace"), 0o755);

    install.ocg(&["start"]).ok();
    vendor.push(Script::Text("Noted, it stays between us.".into()));
    install
        .ocg(&["chat", "--session", "cli:secret", "-m", "My PIN is 4711"])
        .ok();

    let mut loose = Vec::new();
    let mut pending = vec![data.clone()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        seen += 1;
        if meta.permissions().mode() & 0o077 != 0 {
            loose.push(format!(
                "{:o} {}",
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        if meta.is_dir() && path != data.join("workspace") {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    assert!(loose.is_empty(), "readable by others: {loose:#?}");
    // The database, its WAL and the embedding store at least.
    assert!(seen >= 5, "only {seen} entries under {}", data.display());
    install.ocg(&["stop"]).ok();
}

#[test]
fn stop_works_with_a_broken_config_file() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    let agent = install.recorded_pid("agent").unwrap();
    // `./env.config` of the install's working directory, now unreadable.
    std::fs::write(install.path("env.config"), "this line is not KEY=VALUE\n").unwrap();
    assert_ne!(install.ocg(&["status"]).code(), 0);
    let stop = install.ocg(&["stop"]).ok();
    assert!(
        stop.stdout().contains("Agent: stopped"),
        "{}",
        stop.stdout()
    );
    assert!(!alive(agent));
}

/// Pids of the processes running with this install's data dir.
fn processes_of(install: &Install) -> Vec<u32> {
    let mark = format!("OCG_DATA_DIR={}", install.path("data").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == mark.as_bytes()))
        })
        .filter(|pid| ocg_process::proc_stat::read(*pid).is_some_and(|s| !s.is_zombie()))
        .collect()
}

#[test]
fn a_start_that_cannot_own_the_install_says_who_does_and_orphans_nothing() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    let owners: Vec<u32> = ["embedding", "agent", "gateway"]
        .iter()
        .map(|s| install.recorded_pid(s).unwrap())
        .collect();
    let before = processes_of(&install);
    // The pid dir is lost while the services run; a new start must not
    // start a second set over the same data.
    std::fs::remove_dir_all(install.pid_dir()).unwrap();
    let start = install.ocg(&["start"]);
    assert_ne!(start.code(), 0, "{}", start.stdout());
    let said = String::from_utf8_lossy(&start.0.stderr).into_owned();
    assert!(
        said.contains("owned by another process") && said.contains(&format!("PID {}", owners[0])),
        "{said}"
    );
    let mut after = processes_of(&install);
    let mut expected = before.clone();
    after.sort_unstable();
    expected.sort_unstable();
    assert_eq!(after, expected, "nothing new runs, nothing was stopped");
    // The owners are still the ones that answer.
    let (code, _) = http_get(&format!("{}/health", install.gateway_url())).unwrap();
    assert_eq!(code, 200);
    // Without pid files `ocg stop` cannot find them: end them here.
    for pid in owners {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn two_starts_at_once_do_not_interleave() {
    let install = Install::new();
    let spawn = || {
        install
            .command("ocg")
            .arg("start")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    let refused: Vec<String> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    // Either the second waited its turn out (the first had finished) or it
    // was refused; never two sets of services, never a stop of the other's.
    assert!(succeeded >= 1, "{refused:?}");
    for said in &refused {
        assert!(said.contains("another `ocg start`"), "{said}");
    }
    let status = install.ocg(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stdout());
    let pids = processes_of(&install);
    let services = pids
        .iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with("ocg-"))
        })
        .count();
    assert_eq!(services, 3, "one set of services: {pids:?}");
    install.ocg(&["stop"]).ok();
}

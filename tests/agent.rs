//! The agent binary end to end: fake vendors, the real socket, `ocg chat`,
//! crashes, and the real local model.

use std::time::Duration;

use ocg_tests::fake_llm::{self, Script};
use ocg_tests::{Install, alive, unix_http_get, unix_http_post, wait_until};

fn history(install: &Install, key: &str) -> Vec<serde_json::Value> {
    let (status, body) = unix_http_get(
        &install.socket(),
        &format!("/v1/sessions/{key}/history?archived=true"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn ocg_chat_talks_to_an_openai_compatible_vendor_and_keeps_history() {
    let vendor = fake_llm::start_openai();
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OPENAI_API_KEY", "sk-test-secret")
        .with("OPENAI_MODEL", "fake-model");
    install.ocg(&["start"]).ok();

    vendor.push(Script::Text("Paris is the capital of France.".into()));
    let reply = install
        .ocg(&["chat", "--session", "cli:t", "-m", "Capital of France?"])
        .ok();
    assert_eq!(reply.stdout(), "Paris is the capital of France.\n");

    // Piped input: only the reply is printed.
    let mut piped = install
        .command("ocg")
        .args(["chat", "--session", "cli:t"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(b"and Germany?\n")
        .unwrap();
    let output = piped.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "echo: and Germany?\n"
    );

    // The second request carried the first turn as history.
    let second = &vendor.requests()[1];
    assert_eq!(second["model"], "fake-model");
    let roles: Vec<&str> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(history(&install, "cli:t").len(), 4);

    // The key never reaches the logs.
    for log in ["ocg-agent.log", "ocg-gateway.log"] {
        let text = std::fs::read_to_string(install.path("logs").join(log)).unwrap();
        assert!(!text.contains("sk-test-secret"), "{log} leaks the key");
    }
}

#[test]
fn a_vendor_error_is_reported_and_the_next_turn_works() {
    let vendor = fake_llm::start_openai();
    let install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    install.ocg(&["start"]).ok();
    vendor.push(Script::Fail(401, "invalid api key".into()));
    let failed = install.ocg(&["chat", "--session", "cli:e", "-m", "hi"]);
    assert_eq!(failed.code(), 1);
    assert!(failed.stderr().contains("llm_auth"), "{}", failed.stderr());
    let ok = install
        .ocg(&["chat", "--session", "cli:e", "-m", "again"])
        .ok();
    assert_eq!(ok.stdout(), "echo: again\n");
    assert_eq!(
        history(&install, "cli:e").len(),
        2,
        "the failed turn stored nothing"
    );
}

#[test]
fn anthropic_is_spoken_natively() {
    let vendor = fake_llm::start_anthropic();
    let install = Install::new()
        .with("OPENAI_BASE_URL", "")
        .with("ANTHROPIC_API_KEY", "sk-ant-test")
        .with("ANTHROPIC_BASE_URL", &vendor.base_url)
        .with("ANTHROPIC_MODEL", "claude-test");
    install.ocg(&["start"]).ok();
    let reply = install.ocg(&["chat", "-m", "Bonjour"]).ok();
    assert_eq!(reply.stdout(), "echo: Bonjour\n");
    let request = &vendor.requests()[0];
    assert_eq!(request["model"], "claude-test");
    assert!(
        request["system"].as_str().unwrap().contains("OCG"),
        "{request}"
    );
    assert_eq!(request["messages"][0]["role"], "user");
}

#[test]
fn kill_9_in_the_middle_of_a_turn_loses_no_acknowledged_message() {
    let vendor = fake_llm::start_openai();
    let install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    install.ocg(&["start"]).ok();
    install
        .ocg(&["chat", "--session", "s:crash", "-m", "first"])
        .ok();

    vendor.push(Script::Slow {
        first: "partial ".into(),
        hold: Duration::from_secs(30),
        rest: "never".into(),
    });
    let mut turn = install
        .command("ocg")
        .args(["chat", "--session", "s:crash", "-m", "second"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || vendor
        .requests()
        .len()
        == 2));
    std::thread::sleep(Duration::from_millis(200));
    let agent = install.recorded_pid("agent").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        !turn.wait().unwrap().success(),
        "the interrupted turn reports failure"
    );
    assert!(wait_until(Duration::from_secs(2), || !alive(agent)));

    install.ocg(&["start"]).ok();
    let stored = history(&install, "s:crash");
    let texts: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["first", "echo: first"],
        "the acknowledged turn, and no half turn"
    );
    install
        .ocg(&["chat", "--session", "s:crash", "-m", "third"])
        .ok();
    assert_eq!(history(&install, "s:crash").len(), 4);
}

#[test]
fn a_client_that_goes_away_cancels_the_turn() {
    let vendor = fake_llm::start_openai();
    let install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    install.ocg(&["start"]).ok();
    vendor.push(Script::Slow {
        first: "thinking ".into(),
        hold: Duration::from_secs(30),
        rest: "done".into(),
    });
    let mut turn = install
        .command("ocg")
        .args(["chat", "--session", "s:gone", "-m", "slow one"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || vendor
        .requests()
        .len()
        == 1));
    turn.kill().unwrap();
    turn.wait().unwrap();
    let active = || {
        let (_, body) = unix_http_get(&install.socket(), "/v1/stats").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["active_turns"].as_i64()
    };
    assert!(
        wait_until(Duration::from_secs(10), || active() == Some(0)),
        "turn cancelled"
    );
    let (status, _) = unix_http_get(&install.socket(), "/v1/sessions/s:gone/history").unwrap();
    assert_eq!(status, 404, "a cancelled turn stores nothing");
}

#[test]
fn malformed_requests_get_codes_and_the_agent_stays_up() {
    let install = Install::new();
    install.ocg(&["start"]).ok();
    for (body, code) in [
        ("{", 400),
        (r#"{"messages":[]}"#, 400),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"session_key":"bad\u0001key"}"#,
            400,
        ),
    ] {
        let (status, answer) = unix_http_post(&install.socket(), "/v1/chat", body).unwrap();
        assert_eq!(status, code, "{body}: {answer}");
        assert!(answer.contains("\"code\""), "{answer}");
    }
    install.ocg(&["status"]).ok();
}

/// The no-account default: the real llama-server with SmolLM2-135M-Instruct,
/// installed by scripts/setup-llama.sh (which the README's test command runs).
#[test]
fn the_local_default_answers_a_real_question() {
    let home = std::env::var("HOME").unwrap();
    let cache = std::env::var("OCG_CACHE_DIR").unwrap_or_else(|_| format!("{home}/.cache/ocg"));
    let server =
        std::env::var("LLAMA_SERVER_BIN").unwrap_or_else(|_| format!("{cache}/bin/llama-server"));
    let model = std::env::var("CHAT_MODEL_PATH")
        .unwrap_or_else(|_| format!("{cache}/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"));
    let install = Install::new()
        .with("OPENAI_BASE_URL", "")
        .with("LLAMA_SERVER_BIN", &server)
        .with("OCG_CHAT_MODEL_PATH", &model)
        .with("OCG_START_TIMEOUT", "60");
    // As a user does it: `ocg start`, then at once the first question, at the
    // shipped sampling. `ocg start` returns once the model answers.
    let started = install.ocg(&["start"]).ok();
    assert!(
        started.stdout().contains("OCG is running. Gateway:"),
        "{}",
        started.stdout()
    );
    let reply = install
        .ocg(&["chat", "-m", "What is the capital of France?"])
        .ok();
    assert!(
        reply.stdout().to_lowercase().contains("paris"),
        "{}",
        reply.stdout()
    );
    assert_eq!(install.ocg(&["status"]).code(), 0);
    let (_, stats) = unix_http_get(&install.socket(), "/v1/stats").unwrap();
    assert!(stats.contains(r#""provider":"local""#), "{stats}");
    // The model runs in the agent's process group: stopping the agent stops it.
    let agent = install.recorded_pid("agent").unwrap();
    install.ocg(&["stop"]).ok();
    let pgid = i32::try_from(agent).unwrap();
    assert!(
        !ocg_process::proc_stat::group_alive(pgid),
        "llama-server stopped with the agent"
    );
}

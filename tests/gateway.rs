//! The gateway binary end to end: the official OpenAI SDK, WebSocket chat
//! over a real socket, auth, the agent going away and coming back.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ocg_tests::fake_llm;
use ocg_tests::{Install, http_get, wait_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn install_with_fake_llm() -> (Install, fake_llm::FakeLlm) {
    let vendor = fake_llm::start_openai();
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OCG_UI_TOKEN", TOKEN);
    install.ocg(&["start"]).ok();
    (install, vendor)
}

#[test]
fn the_official_openai_python_package_works_against_the_gateway() {
    let python = std::env::var("OCG_TEST_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/ocg/py-openai/bin/python")
    });
    let (install, _vendor) = install_with_fake_llm();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/openai_client.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .env("OCG_URL", install.gateway_url())
        .env("OCG_TOKEN", TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test.sh installs it)"));
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("openai package: ok"));
}

async fn connect(
    url: &str,
    origin: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_chat_over_a_real_socket() {
    let (install, vendor) = install_with_fake_llm();
    let url = format!("ws://127.0.0.1:{}/v1/chat/stream", install.gateway_port);
    let own_origin = format!("http://127.0.0.1:{}", install.gateway_port);

    assert!(
        connect(&url, Some("http://evil.example")).await.is_err(),
        "cross-origin refused"
    );

    let mut socket = connect(&url, Some(&own_origin)).await.unwrap();
    socket
        .send(Message::text(format!(
            r#"{{"type":"auth","token":"{TOKEN}"}}"#
        )))
        .await
        .unwrap();
    vendor.push(fake_llm::Script::Text("streamed answer".into()));
    socket
        .send(Message::text(
            r#"{"type":"chat","id":"r1","session":"web:ws","text":"hi"}"#,
        ))
        .await
        .unwrap();
    let mut text = String::new();
    loop {
        let event = next_json(&mut socket).await;
        assert_eq!(event["id"], "r1", "{event}");
        match event["type"].as_str().unwrap() {
            "delta" => text.push_str(event["text"].as_str().unwrap()),
            "done" => break,
            other => panic!("unexpected {other}: {event}"),
        }
    }
    assert_eq!(text, "streamed answer");

    // Two requests at once on one socket: each event names its request.
    vendor.push(fake_llm::Script::Slow {
        first: "slow ".into(),
        hold: Duration::from_millis(300),
        rest: "one".into(),
    });
    socket
        .send(Message::text(
            r#"{"type":"chat","id":"a","session":"web:a","text":"1"}"#,
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(
            r#"{"type":"chat","id":"b","session":"web:b","text":"2"}"#,
        ))
        .await
        .unwrap();
    let mut finished = Vec::new();
    while finished.len() < 2 {
        let event = next_json(&mut socket).await;
        if event["type"] == "done" {
            finished.push(event["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        finished,
        ["b", "a"],
        "the fast request finished first, untangled"
    );

    // A frame far longer than the gateway's 1 KiB read buffer arrives whole.
    let long = "é".repeat(20_000);
    socket
        .send(Message::text(format!(
            r#"{{"type":"chat","id":"long","session":"web:long","text":"{long}"}}"#
        )))
        .await
        .unwrap();
    let mut answer = String::new();
    loop {
        let event = next_json(&mut socket).await;
        match event["type"].as_str().unwrap() {
            "delta" => answer.push_str(event["text"].as_str().unwrap()),
            "done" => break,
            other => panic!("unexpected {other}: {event}"),
        }
    }
    assert_eq!(answer, format!("echo: {long}"));

    socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "pong");

    // A huge frame closes the connection instead of being buffered.
    let huge = format!(
        r#"{{"type":"chat","id":"x","text":"{}"}}"#,
        "y".repeat(200_000)
    );
    let _ = socket.send(Message::text(huge)).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "oversized frame closes the socket");
    let (status, _) = http_get(&format!("{}/health", install.gateway_url())).unwrap();
    assert_eq!(status, 200, "the gateway is still up");
}

#[test]
fn an_absent_agent_is_a_503_at_once_and_the_gateway_reconnects() {
    let (install, _vendor) = install_with_fake_llm();
    let agent = install.recorded_pid("agent").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
        ])
        .arg(format!("{}/v1/chat/completions", install.gateway_url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "503");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");

    // The agent comes back (a new `ocg start` restarts all three); a fresh
    // gateway is not needed for that, but start replaces everything anyway.
    let socket = install.socket();
    let mut agent = install.spawn_quiet("ocg-agent");
    let health = || {
        http_get(&format!("{}/health", install.gateway_url()))
            .unwrap()
            .1
    };
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()
            && !health().contains("connection refused")),
        "the gateway reaches the new agent: {}",
        health()
    );
    let (status, _) = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("{}/v1/models", install.gateway_url()))
        .output()
        .map(|o| (String::from_utf8_lossy(&o.stdout).into_owned(), ()))
        .unwrap();
    assert_eq!(status, "200", "requests flow again");
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[test]
fn a_missing_token_is_generated_into_env_config_and_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let vendor = fake_llm::start_openai();
    let install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    std::fs::write(
        install.path("env.config"),
        "# my settings\nOCG_MAX_TOOL_ROUNDS=4\n",
    )
    .unwrap();
    install.ocg(&["start"]).ok();
    // Both tokens of the install: the UI's and the embedding service's
    // (shared with the agent), appended after the user's own lines.
    let text = std::fs::read_to_string(install.path("env.config")).unwrap();
    assert!(
        text.starts_with("# my settings\nOCG_MAX_TOOL_ROUNDS=4\n"),
        "{text}"
    );
    let token = install.file_setting("OCG_UI_TOKEN").expect("a UI token");
    let embedding_token = install
        .file_setting("OCG_EMBEDDING_TOKEN")
        .expect("an embedding token");
    assert_eq!((token.len(), embedding_token.len()), (64, 64));
    assert_ne!(token, embedding_token);
    let mode = std::fs::metadata(install.path("env.config"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    for service in ["gateway", "agent", "embedding"] {
        let log =
            std::fs::read_to_string(install.path(&format!("logs/ocg-{service}.log"))).unwrap();
        assert!(
            !log.contains(&token) && !log.contains(&embedding_token),
            "no token in the {service} log"
        );
    }
    let log = std::fs::read_to_string(install.path("logs/ocg-gateway.log")).unwrap();
    assert!(
        log.contains("env.config"),
        "the log says where the token is: {log}"
    );

    let shown = install
        .command("ocg-gateway")
        .args(["token", "show"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), token);
    let routes = install
        .command("ocg-gateway")
        .arg("routes")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains("/v1/chat/completions"));
    let check = install
        .command("ocg-gateway")
        .arg("check")
        .output()
        .unwrap();
    assert!(check.status.success());
    let rotated = install
        .command("ocg-gateway")
        .args(["token", "rotate"])
        .output()
        .unwrap();
    assert!(rotated.status.success());
    let text = std::fs::read_to_string(install.path("env.config")).unwrap();
    assert!(!text.contains(&token), "rotated");
    assert!(text.starts_with("# my settings\n"));
}

//! Several agents and gateways over one PostgreSQL. Behind one gateway
//! (`OCG_AGENTS`), turns of one session from many clients at once are
//! serialized across the agents and none is lost, and an agent killed
//! mid-turn costs the user nothing: the gateway runs the turn again on the
//! other agent. Of two gateways, the one holding the channels' lease polls
//! Telegram; killed mid-answer, the other takes the lease over and answers
//! what was left, exactly once.

use std::time::Duration;

use ocg_tests::fake_llm::{FakeLlm, Script};
use ocg_tests::fake_telegram;
use ocg_tests::postgres_server::Postgres;
use ocg_tests::{Install, KillOnDrop, free_port, http_get, http_send_with, wait_until};
use serde_json::{Value, json};

const AGENT_TOKEN: &str = "shared-store-agent-token-0123";
const UI_TOKEN: &str = "shared-store-ui-token-0123456789";

/// An agent process of the cluster, answering with its own fake vendor.
struct ClusterAgent {
    process: KillOnDrop,
    vendor: FakeLlm,
    addr: String,
    _install: Install,
}

fn start_agent(database: &str) -> ClusterAgent {
    let vendor = ocg_tests::fake_llm::start_openai();
    let addr = format!("127.0.0.1:{}", free_port());
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OCG_DATABASE_URL", database)
        .with("OCG_AGENT_ADDR", &addr)
        .with("OCG_AGENT_TOKEN", AGENT_TOKEN)
        .with("OCG_AUTO_RECALL", "false");
    let process = install.spawn_quiet("ocg-agent");
    let health = format!("http://{addr}/health");
    assert!(
        wait_until(Duration::from_secs(30), || {
            http_send_with(
                "GET",
                &health,
                &[("Authorization", &format!("Bearer {AGENT_TOKEN}"))],
                b"",
            )
            .is_some_and(|(status, _)| status == 200)
        }),
        "the agent listens on {addr}"
    );
    ClusterAgent {
        process,
        vendor,
        addr,
        _install: install,
    }
}

fn start_gateway(agents: &[&ClusterAgent]) -> (Install, KillOnDrop) {
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let install = Install::new()
        .with("OCG_AGENTS", &addrs.join(","))
        .with("OCG_AGENT_TOKEN", AGENT_TOKEN)
        .with("OCG_UI_TOKEN", UI_TOKEN);
    let process = install.spawn_quiet("ocg-gateway");
    let health = format!("{}/health", install.gateway_url());
    assert!(
        wait_until(Duration::from_secs(30), || http_get(&health).is_some_and(
            |(status, body)| status == 200 && body.contains("\"ok\"")
        )),
        "the gateway reaches both agents: {:?}",
        http_get(&health)
    );
    (install, process)
}

/// One turn of session `session` through the gateway's OpenAI API: the
/// status and the reply's text.
fn ask(gateway: &str, session: &str, text: &str) -> (u16, String) {
    let body = json!({"messages": [{"role": "user", "content": text}]}).to_string();
    let (status, answer) = http_send_with(
        "POST",
        &format!("{gateway}/v1/chat/completions"),
        &[
            ("Authorization", &format!("Bearer {UI_TOKEN}")),
            ("Content-Type", "application/json"),
            ("X-OCG-Session", session),
        ],
        body.as_bytes(),
    )
    .unwrap();
    let reply = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|v| {
            v["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or(answer);
    (status, reply)
}

/// The user messages a vendor request carried.
fn user_messages(request: &Value) -> usize {
    request["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "user").count())
}

#[test]
fn two_agents_behind_one_gateway_serialize_a_session_and_survive_a_kill_mid_turn() {
    let pg = Postgres::start();
    let url = pg.create_database("cluster");
    let mut a = start_agent(&url);
    let mut b = start_agent(&url);
    let (gateway, _gateway_process) = start_gateway(&[&a, &b]);
    let base = gateway.gateway_url();

    // Eight clients write to one session at once.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || ask(&base, "team", &format!("note {i}")))
        })
        .collect();
    for client in clients {
        let (status, reply) = client.join().unwrap();
        assert_eq!(status, 200, "{reply}");
        assert!(reply.starts_with("echo: note "), "{reply}");
    }
    let (from_a, from_b) = (a.vendor.requests(), b.vendor.requests());
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both agents answered: {} and {}",
        from_a.len(),
        from_b.len()
    );
    // Serialized: each turn saw every turn before it, whichever agent ran it.
    let mut seen: Vec<usize> = from_a.iter().chain(&from_b).map(user_messages).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    assert_eq!(
        pg.psql(
            "cluster",
            "SELECT count(*) || ' ' || count(DISTINCT turn) || ' ' || max(turn)
             FROM ocg_messages WHERE session_key = 'api:team'"
        )
        .unwrap(),
        "16 8 8",
        "every turn stored once, numbered 1 to 8"
    );

    // An agent is killed while its model is still answering.
    for agent in [&a, &b] {
        agent.vendor.push(Script::Slow {
            first: "Thinking".into(),
            hold: Duration::from_secs(60),
            rest: " about it.".into(),
        });
    }
    let asking = {
        let base = base.clone();
        std::thread::spawn(move || ask(&base, "kill", "the important question"))
    };
    let asked = |vendor: &FakeLlm| {
        vendor
            .requests()
            .iter()
            .any(|r| r.to_string().contains("the important question"))
    };
    assert!(wait_until(Duration::from_secs(20), || asked(&a.vendor)
        || asked(&b.vendor)));
    let (victim, survivor) = if asked(&a.vendor) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    survivor.vendor.clear_scripts();
    victim.process.kill().unwrap();
    let (status, reply) = asking.join().unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, "echo: the important question");
    assert!(asked(&survivor.vendor), "the other agent ran the turn");
    assert_eq!(
        pg.psql(
            "cluster",
            "SELECT count(*) FROM ocg_messages WHERE session_key = 'api:kill'"
        )
        .unwrap(),
        "2",
        "the turn is stored once, nothing of the lost attempt"
    );
    // The gateway goes on with the agent that is left.
    let (status, reply) = ask(&base, "kill", "and now?");
    assert_eq!((status, reply.as_str()), (200, "echo: and now?"));
    let last = survivor.vendor.requests().last().cloned().unwrap();
    assert_eq!(user_messages(&last), 2, "it sees the turn before");
}

const BOT_TOKEN: &str = "123456:SHARED-bot_token-SECRET";

/// A gateway of the shared store with the Telegram channel (chat 7
/// allowed), using `agents`.
fn telegram_gateway(
    database: &str,
    agents: &[&ClusterAgent],
    telegram: &str,
) -> (Install, KillOnDrop) {
    let addrs: Vec<&str> = agents.iter().map(|a| a.addr.as_str()).collect();
    let install = Install::new()
        .with("OCG_AGENTS", &addrs.join(","))
        .with("OCG_AGENT_TOKEN", AGENT_TOKEN)
        .with("OCG_UI_TOKEN", UI_TOKEN)
        .with("OCG_DATABASE_URL", database)
        .with("OCG_CHANNEL_LEASE_SECS", "3")
        .with("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .with("TELEGRAM_API_URL", telegram)
        .with("TELEGRAM_ALLOWED_CHATS", "7")
        .with("RUST_LOG", "info");
    std::fs::create_dir_all(install.path("logs")).unwrap();
    let log = std::fs::File::create(install.path("logs/gateway.log")).unwrap();
    let process = KillOnDrop(
        install
            .command("ocg-gateway")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let health = format!("{}/health", install.gateway_url());
    assert!(
        wait_until(Duration::from_secs(30), || http_get(&health).is_some()),
        "the gateway answers"
    );
    (install, process)
}

/// The state of `gateway`'s Telegram channel (`connected`, `standby`, …).
fn telegram_state(gateway: &Install) -> String {
    let (status, body) = http_send_with(
        "GET",
        &format!("{}/api/channels", gateway.gateway_url()),
        &[("Authorization", &format!("Bearer {UI_TOKEN}"))],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let channels: Value = serde_json::from_str(&body).unwrap();
    channels
        .as_array()
        .or_else(|| channels["channels"].as_array())
        .and_then(|all| all.iter().find(|c| c["name"] == "telegram"))
        .map(|c| c["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_telegram_update_is_answered_once_while_another_gateway_takes_the_lease_over() {
    let pg = Postgres::start();
    let url = pg.create_database("gateways");
    let (a, b) = (start_agent(&url), start_agent(&url));
    let telegram = fake_telegram::start(BOT_TOKEN);
    let (first, mut first_process) = telegram_gateway(&url, &[&a, &b], &telegram.url);
    let limit = Duration::from_secs(20);
    assert!(
        wait_until(limit, || telegram_state(&first) != "standby"),
        "the first gateway takes the lease: {}\n{}",
        telegram_state(&first),
        std::fs::read_to_string(first.path("logs/gateway.log")).unwrap_or_default()
    );
    let (second, _second_process) = telegram_gateway(&url, &[&a, &b], &telegram.url);
    telegram.push_text(7, "before");
    assert!(telegram.wait(limit, |t| t.texts_to(7).len() == 1));
    assert_eq!(telegram_state(&first), "connected");
    assert_eq!(telegram_state(&second), "standby", "one gateway polls");

    // The first gateway has recorded the next update and waits for the
    // agent's answer when it is killed.
    for agent in [&a, &b] {
        agent.vendor.push(Script::Slow {
            first: "partial ".into(),
            hold: Duration::from_secs(60),
            rest: "answer".into(),
        });
    }
    telegram.push_text(7, "during");
    let asked = |agent: &ClusterAgent| {
        agent
            .vendor
            .requests()
            .iter()
            .any(|r| r.to_string().contains("during"))
    };
    assert!(
        wait_until(limit, || asked(&a) || asked(&b)),
        "a model is working on the second message"
    );
    // The answer again (by either agent) comes at once.
    a.vendor.clear_scripts();
    b.vendor.clear_scripts();
    first_process.kill().unwrap();
    assert_eq!(telegram.texts_to(7), ["echo: before"], "no reply yet");

    // The second gateway takes the lease once it expires, replays the
    // journal from PostgreSQL and answers the update left pending.
    assert!(
        telegram.wait(Duration::from_secs(30), |t| t.texts_to(7).len() == 2),
        "{:?}\n{}",
        telegram.texts_to(7),
        std::fs::read_to_string(second.path("logs/gateway.log")).unwrap_or_default()
    );
    telegram.push_text(7, "after");
    assert!(telegram.wait(limit, |t| t.texts_to(7).len() >= 3));
    assert_eq!(telegram_state(&second), "connected");
    // Give a repeated reply every chance to show up.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        telegram.texts_to(7),
        ["echo: before", "echo: during", "echo: after"],
        "each update answered once, in order"
    );
    assert_eq!(
        pg.psql(
            "gateways",
            "SELECT string_agg(DISTINCT name, ',') || ' ' || (SELECT count(*) FROM ocg_leases)
             FROM ocg_journal"
        )
        .unwrap(),
        "123456.inbound 1",
        "the journals and the lease are in PostgreSQL"
    );
}

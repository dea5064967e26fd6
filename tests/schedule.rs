//! Scheduled jobs end to end: the real agent and gateway, a fake model and
//! a fake Telegram; jobs created through the REST API, the CLI and the
//! model's `schedule` tool; kill -9 mid-run; two agents on one database.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ocg_tests::fake_llm::{self, Script};
use ocg_tests::{Install, KillOnDrop, unix_http_get, wait_until};
use serde_json::{Value, json};

use crate::telegram::{Bot, LIMIT, UI_TOKEN, request};

/// A call of the gateway's API with the UI token; status and JSON body.
fn api(bot: &Bot, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = request(
        method,
        &format!("{}{path}", bot.install.gateway_url()),
        &[("Authorization", &format!("Bearer {UI_TOKEN}"))],
        &body,
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn runs(bot: &Bot, id: &str) -> Vec<Value> {
    let (status, runs) = api(
        bot,
        "GET",
        &format!("/api/cron/{id}/runs?limit=100"),
        Value::Null,
    );
    assert_eq!(status, 200, "{runs}");
    runs.as_array().unwrap().clone()
}

#[test]
fn an_every_job_delivers_to_a_telegram_chat_exactly_once_per_period() {
    let bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "7")]);
    let (status, job) = api(
        &bot,
        "POST",
        "/api/cron",
        json!({
            "name": "tick",
            "schedule": {"kind": "every", "every": "2s"},
            "message": "Say tick.",
            "session": {"kind": "named", "key": "telegram:7"},
            "deliver": {"kind": "chat", "channel": "telegram", "chat_id": "7"}
        }),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let created = job["created_at_ms"].as_i64().unwrap();
    assert_eq!(job["next_run_ms"].as_i64(), Some(created + 2_000));

    // Bad input gets the agent's reason and a stable code, and nothing is stored.
    let (status, error) = api(
        &bot,
        "POST",
        "/api/cron",
        json!({"schedule": {"kind": "cron", "expr": "0 25 * * *"}, "message": "x"}),
    );
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "invalid_input");
    assert!(error["error"]["message"].as_str().unwrap().contains("cron"));

    let tg = &bot.telegram;
    assert!(
        tg.wait(Duration::from_secs(30), |t| t.texts_to(7).len() >= 4),
        "four ticks arrive: {:?}\n{}",
        tg.texts_to(7),
        bot.agent_log()
    );
    let (status, paused) = api(
        &bot,
        "PATCH",
        &format!("/api/cron/{id}"),
        json!({"enabled": false}),
    );
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["enabled"], false);
    let paused_at = paused["updated_at_ms"].as_i64().unwrap();
    // Whatever was claimed before the pause ends and is delivered.
    std::thread::sleep(Duration::from_secs(3));

    let runs = runs(&bot, &id);
    let periods = (paused_at - created) / 2_000;
    let mut occurrences: Vec<i64> = runs
        .iter()
        .map(|r| r["occurrence_ms"].as_i64().unwrap())
        .collect();
    occurrences.sort_unstable();
    let expected: Vec<i64> = (1..=occurrences.len() as i64)
        .map(|k| created + 2_000 * k)
        .collect();
    assert_eq!(occurrences, expected, "one run per period, none twice");
    assert!(
        (periods - 1..=periods).contains(&(runs.len() as i64)),
        "{} runs over {periods} periods",
        runs.len()
    );
    assert!(
        runs.iter()
            .all(|r| r["status"] == "ok" && r["delivery"] == "sent"),
        "{runs:?}"
    );
    let texts = tg.texts_to(7);
    assert_eq!(texts.len(), runs.len(), "one message per run: {texts:?}");
    assert!(texts.iter().all(|t| t.contains("Say tick.")), "{texts:?}");

    // The job and its runs go away together.
    let (status, _) = api(&bot, "DELETE", &format!("/api/cron/{id}"), Value::Null);
    assert_eq!(status, 204);
    let (status, gone) = api(&bot, "GET", &format!("/api/cron/{id}"), Value::Null);
    assert_eq!(status, 404, "{gone}");
}

#[test]
fn kill_9_during_a_run_neither_loses_the_occurrence_nor_delivers_it_twice() {
    let mut bot = Bot::start(&[
        ("TELEGRAM_ALLOWED_CHATS", "7"),
        ("OCG_SCHEDULER_LEASE_SECS", "2"),
    ]);
    // The first run hangs in the model until the agent is killed.
    bot.vendor.push(Script::Slow {
        first: "Half".into(),
        hold: Duration::from_secs(60),
        rest: " an answer".into(),
    });
    bot.vendor.push(Script::Text("Call the bank.".into()));
    let (status, job) = api(
        &bot,
        "POST",
        "/api/cron",
        json!({
            "schedule": {"kind": "at", "at": "in 1s"},
            "message": "Remind the user to call the bank.",
            "deliver": {"kind": "chat", "channel": "telegram", "chat_id": "7"}
        }),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(
        wait_until(LIMIT, || !bot.vendor.requests().is_empty()),
        "the run reaches the model"
    );
    bot.kill_agent();
    bot.start_agent();

    assert!(
        bot.telegram.wait(LIMIT, |t| !t.texts_to(7).is_empty()),
        "the retried run delivers: {}",
        bot.agent_log()
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(bot.telegram.texts_to(7), ["Call the bank."]);
    let runs = runs(&bot, &id);
    let shape: Vec<(i64, &str, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["attempt"].as_i64().unwrap(),
                r["status"].as_str().unwrap(),
                r["trigger"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(shape, [(2, "ok", "retry"), (1, "interrupted", "schedule")]);
    assert_eq!(runs[0]["occurrence_ms"], runs[1]["occurrence_ms"]);
    assert_eq!(
        bot.vendor.requests().len(),
        2,
        "the model was asked twice, no more"
    );
}

#[test]
fn a_reminder_asked_for_in_a_telegram_chat_arrives_there_once_across_a_restart() {
    let mut bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "7")]);
    // The turn: the model calls the tool, then confirms.
    bot.vendor.push(Script::Tools(vec![(
        "schedule".into(),
        json!({"action": "create", "at": "in 5s", "message": "Remind the user to stretch."}),
    )]));
    bot.vendor
        .push(Script::Text("I will remind you in 5 seconds.".into()));
    // The run, later.
    bot.vendor.push(Script::Text("Time to stretch!".into()));
    bot.telegram
        .push_text(7, "remind me in 5 seconds to stretch");
    assert!(
        bot.telegram.wait(LIMIT, |t| !t.texts_to(7).is_empty()),
        "the confirmation arrives: {}",
        bot.agent_log()
    );
    assert_eq!(
        bot.telegram.texts_to(7),
        ["I will remind you in 5 seconds."]
    );
    let (_, jobs) = api(&bot, "GET", "/api/cron", Value::Null);
    let job = jobs[0].clone();
    assert_eq!(
        job["session"],
        json!({"kind": "named", "key": "telegram:7"})
    );
    assert_eq!(
        job["deliver"],
        json!({"kind": "chat", "channel": "telegram", "chat_id": "7"})
    );
    assert_eq!(job["origin"], "telegram:7");

    // The agent restarts during the wait.
    bot.terminate_agent();
    bot.start_agent();
    assert!(
        bot.telegram.wait(LIMIT, |t| t.texts_to(7).len() >= 2),
        "the reminder arrives: {}",
        bot.agent_log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        bot.telegram.texts_to(7),
        ["I will remind you in 5 seconds.", "Time to stretch!"]
    );
    let due = job["next_run_ms"].as_i64().unwrap();
    let runs = runs(&bot, job["id"].as_str().unwrap());
    assert_eq!(runs.len(), 1, "{runs:?}");
    let started = runs[0]["started_at_ms"].as_i64().unwrap();
    assert!(
        (due..due + 2_000).contains(&started),
        "started {} ms after its time: {}",
        started - due,
        bot.agent_log()
    );
    // The run was a turn of the chat's own session.
    let requests = bot.vendor.requests();
    let last = requests.last().unwrap().to_string();
    assert!(last.contains("remind me in 5 seconds to stretch"), "{last}");
    assert!(last.contains("Remind the user to stretch."), "{last}");
}

/// An agent on `socket` with the database at `database`.
/// An agent of `install` on the store `store` names (`OCG_DATABASE` or
/// `OCG_DATABASE_URL`).
fn agent_on(install: &Install, store: (&str, &str), vendor: &str) -> KillOnDrop {
    std::fs::create_dir_all(install.path("logs")).unwrap();
    let child = install
        .command("ocg-agent")
        .env(store.0, store.1)
        .env("OPENAI_BASE_URL", vendor)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(install.path("logs/agent.log")).unwrap())
        .spawn()
        .unwrap();
    let socket = install.socket();
    assert!(
        wait_until(LIMIT, || unix_http_get(&socket, "/v1/jobs")
            .is_some_and(|(status, _)| status == 200)),
        "the agent answers with its jobs (PostgreSQL's are migrated in the background)"
    );
    KillOnDrop(child)
}

#[test]
fn two_agents_on_one_database_claim_each_occurrence_once_and_the_cli_manages_jobs() {
    let shared = tempfile::tempdir().unwrap();
    let database = shared.path().join("ocg.db");
    two_agents_claim_each_occurrence_once(("OCG_DATABASE", database.to_str().unwrap()));
}

#[test]
fn two_agents_on_one_postgres_claim_each_occurrence_once() {
    let pg = ocg_tests::postgres_server::Postgres::start();
    let url = pg.create_database("schedule");
    two_agents_claim_each_occurrence_once(("OCG_DATABASE_URL", &url));
    let runs = pg
        .psql(
            "schedule",
            "SELECT count(*) FROM ocg_job_runs WHERE status = 'ok'",
        )
        .unwrap();
    assert!(
        runs.parse::<u32>().unwrap() >= 12,
        "the runs are PostgreSQL's: {runs}"
    );
}

/// Four jobs every second for six seconds, on two agents over `store`.
fn two_agents_claim_each_occurrence_once(store: (&str, &str)) {
    let vendor = fake_llm::start_openai();
    let (a, b) = (Install::new(), Install::new());
    let _agent_a = agent_on(&a, store, &vendor.base_url);
    let _agent_b = agent_on(&b, store, &vendor.base_url);

    let mut ids = Vec::new();
    for n in 0..4 {
        let added = a
            .ocg(&[
                "cron",
                "add",
                "--every",
                "1s",
                "--message",
                &format!("job {n}"),
                "--json",
            ])
            .ok();
        let job: Value = serde_json::from_str(&added.stdout()).unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    // Both agents see the same jobs.
    let listed = b.ocg(&["cron", "list"]).ok().stdout();
    for id in &ids {
        assert!(listed.contains(id.as_str()), "{listed}");
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    for id in &ids {
        a.ocg(&["cron", "pause", id]).ok();
    }
    let elapsed = started.elapsed().as_millis() as i64;
    std::thread::sleep(Duration::from_secs(1));

    let mut total = 0;
    for id in &ids {
        let runs: Vec<Value> = serde_json::from_str(
            &b.ocg(&["cron", "runs", id, "-n", "100", "--json"])
                .ok()
                .stdout(),
        )
        .unwrap();
        let mut occurrences: Vec<i64> = runs
            .iter()
            .map(|r| r["occurrence_ms"].as_i64().unwrap())
            .collect();
        occurrences.sort_unstable();
        let before = occurrences.len();
        occurrences.dedup();
        assert_eq!(
            occurrences.len(),
            before,
            "an occurrence ran twice: {runs:?}"
        );
        assert!(
            occurrences.windows(2).all(|w| w[1] - w[0] == 1_000),
            "none lost: {occurrences:?}"
        );
        assert!(runs.iter().all(|r| r["status"] == "ok"), "{runs:?}");
        assert!(
            occurrences.len() as i64 >= elapsed / 1_000 - 2,
            "{occurrences:?} in {elapsed} ms"
        );
        total += runs.len();
    }
    let text = |i: &Install| std::fs::read_to_string(i.path("logs/agent.log")).unwrap_or_default();
    let started_by = |i: &Install| text(i).matches("scheduled run started").count();
    assert_eq!(
        started_by(&a) + started_by(&b),
        total,
        "each run started by one agent"
    );
    assert_eq!(vendor.requests().len(), total, "one model call per run");

    let shown = a.ocg(&["cron", "runs", &ids[0]]).ok().stdout();
    assert!(
        shown.contains("ok") && shown.contains("schedule"),
        "{shown}"
    );
    a.ocg(&["cron", "rm", &ids[0]]).ok();
    let missing = a.ocg(&["cron", "runs", &ids[0]]);
    assert_ne!(missing.code(), 0);
    assert!(
        missing.stderr().contains("not found"),
        "{}",
        missing.stderr()
    );
}

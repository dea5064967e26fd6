//! Run with: bench/channels.sh [matrix|email|discord|slack]   (builds release binaries)
//!
//! Chat turns through the Matrix, email, Discord and Slack channels against the same
//! turns sent to the same gateway and agent through the OpenAI-compatible
//! API (the baseline: the same agent turn without the channel), in the same
//! run:
//!
//! - Matrix: a person's client → a real Synapse → gateway (`/sync`,
//!   journal) → agent → fake LLM → Synapse → the person's `/sync`.
//! - Email: a person's SMTP submission → aiosmtpd → Maildir → Dovecot →
//!   gateway (IMAP IDLE, journal) → agent → fake LLM → SMTP → aiosmtpd →
//!   the person's Maildir.
//! - Discord and Slack: the fakes of the test tree (`tests/fake_discord.rs`,
//!   `tests/fake_slack.rs`) → gateway (Gateway WebSocket or Socket Mode,
//!   journal) → agent → fake LLM → the fake's REST or Web API. No platform
//!   latency is in it: what is measured is the channel's own cost.
//!
//! Throughput: 50 people with 2 messages each, all sent at once (the
//! baseline: 50 concurrent API clients with 2 turns each). Latency: one
//! message at a time, from sending to the reply arriving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ocg_tests::bench::{
    BenchStack, Measured, api_throughput, api_turn, percentile, print_channel_table,
};
use ocg_tests::fake_llm;
use ocg_tests::mail_server::MailServers;
use ocg_tests::matrix_server::{Person, Synapse};
use ocg_tests::{fake_discord, fake_slack};

const TOKEN: &str = "benchmark-token-0123456789abcdef";
const PEOPLE: usize = 50;
const PER_PERSON: usize = 2;
const SEQUENTIAL: usize = 50;
const BOT: &str = "@ocg:ocg.test";

/// The baseline's latency samples and rate, measured on `stack`.
async fn baseline(stack: &BenchStack) -> Measured {
    let api = format!("http://127.0.0.1:{}/v1/chat/completions", stack.port);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    for n in 0..10 {
        api_turn(&client, &api, TOKEN, "warm", &format!("w{n}")).await;
    }
    let mut direct = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        direct.push(api_turn(&client, &api, TOKEN, "seq", &format!("seq-{n}")).await);
    }
    let rate = api_throughput(&client, &api, TOKEN, "p", (PEOPLE, PER_PERSON)).await;
    Measured {
        latency_ms: direct,
        rate,
    }
}

/// Wait until `condition` holds, polling every `every`.
fn wait(limit: Duration, every: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(every);
    }
}

async fn matrix(bin: &Path, llm: &str) {
    let synapse = Synapse::start();
    synapse.register("ocg", "bot-password");
    let stack = BenchStack::new(bin, llm, TOKEN)
        .with("MATRIX_HOMESERVER", &synapse.url())
        .with("MATRIX_USER_ID", BOT)
        .with("MATRIX_PASSWORD", "bot-password")
        .with("MATRIX_ALLOWED", "@*:ocg.test");
    stack.ocg(&["start"]);
    let join = |person: &Person| {
        let room = person.create_room(&[BOT], true, false);
        wait(Duration::from_secs(60), Duration::from_millis(50), || {
            person.members(&room).iter().any(|m| m == BOT)
        });
        room
    };
    let solo = synapse.register("solo", "solo-password");
    let room = join(&solo);
    let (_, mut since) = solo.sync_from(None, BOT, 0);
    let mut turn = |text: &str| {
        let start = Instant::now();
        solo.say(&room, text);
        loop {
            let (bodies, next) = solo.sync_from(Some(&since), BOT, 30_000);
            since = next;
            if !bodies.is_empty() {
                assert_eq!(bodies, [format!("echo: {text}")]);
                return start.elapsed().as_secs_f64() * 1000.0;
            }
        }
    };
    for n in 0..5 {
        turn(&format!("w{n}"));
    }
    let channel: Vec<f64> = (0..SEQUENTIAL).map(|n| turn(&format!("seq-{n}"))).collect();
    let direct = baseline(&stack).await;

    // What Synapse alone takes for one hop (a message from one client to
    // another's waiting /sync); the channel's path has two.
    let peer = synapse.register("peer", "peer-password");
    let between = solo.create_room(&[&peer.user_id], false, false);
    peer.join(&between);
    let (_, mut peer_since) = peer.sync_from(None, &solo.user_id, 0);
    let mut hop = |text: &str| {
        let start = Instant::now();
        solo.say(&between, text);
        loop {
            let (bodies, next) = peer.sync_from(Some(&peer_since), &solo.user_id, 30_000);
            peer_since = next;
            if bodies.iter().any(|b| b == text) {
                return start.elapsed().as_secs_f64() * 1000.0;
            }
        }
    };
    let mut hops: Vec<f64> = (0..SEQUENTIAL).map(|n| hop(&format!("hop-{n}"))).collect();

    let people: Vec<(Person, String)> = (0..PEOPLE)
        .map(|p| {
            let person = synapse.register(&format!("p{p}"), "password");
            let room = join(&person);
            (person, room)
        })
        .collect();
    let start = Instant::now();
    for n in 0..PER_PERSON {
        for (p, (person, room)) in people.iter().enumerate() {
            person.say(room, &format!("p{p}-{n}"));
        }
    }
    for (person, room) in &people {
        wait(Duration::from_secs(600), Duration::from_millis(20), || {
            person.from(room, BOT).len() >= PER_PERSON
        });
    }
    let rate = (PEOPLE * PER_PERSON) as f64 / start.elapsed().as_secs_f64();
    for (p, (person, room)) in people.iter().enumerate() {
        let texts: Vec<String> = person.from(room, BOT).into_iter().map(|s| s.body).collect();
        let expected: Vec<String> = (0..PER_PERSON).map(|n| format!("echo: p{p}-{n}")).collect();
        assert_eq!(texts, expected, "p{p} answered in order, once each");
    }
    stack.ocg(&["stop"]);
    println!();
    println!(
        "Synapse alone, one hop (client → Synapse → another client's /sync), ms: p50 {:.2}, p99 {:.2}",
        percentile(&mut hops, 0.5),
        percentile(&mut hops, 0.99)
    );
    print_channel_table(
        (
            "Matrix",
            "client → Synapse → gateway → agent → fake LLM → Synapse → client",
        ),
        (&format!("{PEOPLE} people × {PER_PERSON}"), SEQUENTIAL),
        direct,
        Measured {
            latency_ms: channel,
            rate,
        },
    );
}

async fn email(bin: &Path, llm: &str) {
    let mut users = vec!["ocg".to_owned(), "solo".to_owned()];
    users.extend((0..PEOPLE).map(|p| format!("p{p}")));
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let servers = MailServers::start(&names);
    let stack = BenchStack::new(bin, llm, TOKEN)
        .with(
            "EMAIL_IMAP_SERVER",
            &format!("127.0.0.1:{}", servers.imap_port),
        )
        .with(
            "EMAIL_SMTP_SERVER",
            &format!("127.0.0.1:{}", servers.smtp_port),
        )
        .with("EMAIL_USERNAME", "ocg")
        .with("EMAIL_PASSWORD", "ocg-password")
        .with("EMAIL_FROM", "ocg@localhost")
        .with("EMAIL_TLS", "false")
        .with("EMAIL_ALLOWED", "@localhost");
    stack.ocg(&["start"]);
    // The channel logs in and starts IDLE after the stack is up.
    std::thread::sleep(Duration::from_secs(3));
    let mail = |from: &str, id: &str, text: &str| {
        format!(
            "From: {from}@localhost\nTo: ocg@localhost\nSubject: {text}\nMessage-ID: <{id}@localhost>\n\
             Content-Type: text/plain; charset=utf-8\n\n{text}\n"
        )
    };
    let turn = |n: usize, text: &str| {
        let start = Instant::now();
        servers.send(
            "solo@localhost",
            "ocg@localhost",
            &mail("solo", &format!("s{n}"), text),
        );
        wait(Duration::from_secs(60), Duration::from_millis(1), || {
            servers.received("solo").len() > n
        });
        start.elapsed().as_secs_f64() * 1000.0
    };
    for n in 0..5 {
        turn(n, &format!("w{n}"));
    }
    let channel: Vec<f64> = (0..SEQUENTIAL)
        .map(|n| turn(n + 5, &format!("seq-{n}")))
        .collect();
    let direct = baseline(&stack).await;

    let start = Instant::now();
    for n in 0..PER_PERSON {
        for p in 0..PEOPLE {
            let from = format!("p{p}");
            servers.send(
                &format!("{from}@localhost"),
                "ocg@localhost",
                &mail(&from, &format!("p{p}-{n}"), &format!("p{p}-{n}")),
            );
        }
    }
    for p in 0..PEOPLE {
        wait(Duration::from_secs(600), Duration::from_millis(20), || {
            servers.received(&format!("p{p}")).len() >= PER_PERSON
        });
    }
    let rate = (PEOPLE * PER_PERSON) as f64 / start.elapsed().as_secs_f64();
    stack.ocg(&["stop"]);
    print_channel_table(
        (
            "Email",
            "SMTP → aiosmtpd → Dovecot → gateway (IMAP IDLE) → agent → fake LLM → SMTP → Maildir",
        ),
        (&format!("{PEOPLE} people × {PER_PERSON}"), SEQUENTIAL),
        direct,
        Measured {
            latency_ms: channel,
            rate,
        },
    );
}

/// Turns through a fake platform: `push(person, text)` sends a message of
/// person `p`, `replies(p)` are the texts sent back to them so far.
async fn through_fake(
    stack: &BenchStack,
    name: &str,
    path: &str,
    push: impl Fn(usize, &str),
    replies: impl Fn(usize) -> Vec<String>,
) {
    let solo = PEOPLE;
    let turn = |n: usize, text: &str| {
        let start = Instant::now();
        push(solo, text);
        wait(Duration::from_secs(60), Duration::from_micros(200), || {
            replies(solo).len() > n
        });
        assert_eq!(replies(solo)[n], format!("echo: {text}"));
        start.elapsed().as_secs_f64() * 1000.0
    };
    for n in 0..5 {
        turn(n, &format!("w{n}"));
    }
    let channel: Vec<f64> = (0..SEQUENTIAL)
        .map(|n| turn(5 + n, &format!("seq-{n}")))
        .collect();
    let direct = baseline(stack).await;
    let start = Instant::now();
    for n in 0..PER_PERSON {
        for p in 0..PEOPLE {
            push(p, &format!("p{p}-{n}"));
        }
    }
    for p in 0..PEOPLE {
        wait(Duration::from_secs(600), Duration::from_millis(1), || {
            replies(p).len() >= PER_PERSON
        });
    }
    let rate = (PEOPLE * PER_PERSON) as f64 / start.elapsed().as_secs_f64();
    for p in 0..PEOPLE {
        let expected: Vec<String> = (0..PER_PERSON).map(|n| format!("echo: p{p}-{n}")).collect();
        assert_eq!(replies(p), expected, "p{p} answered in order, once each");
    }
    stack.ocg(&["stop"]);
    print_channel_table(
        (name, path),
        (&format!("{PEOPLE} people × {PER_PERSON}"), SEQUENTIAL),
        direct,
        Measured {
            latency_ms: channel,
            rate,
        },
    );
}

async fn discord(bin: &Path, llm: &str) {
    const TOKEN_D: &str = "MTEyMjMzNDQ1NTY2Nzc4ODk5.GxYzAb.bench-discord_token";
    let fake = fake_discord::start(TOKEN_D);
    let user = |p: usize| format!("{}", 300_000_000_000_000_000u64 + p as u64);
    let allowed: Vec<String> = (0..=PEOPLE).map(user).collect();
    let stack = BenchStack::new(bin, llm, TOKEN)
        .with("DISCORD_BOT_TOKEN", TOKEN_D)
        .with("DISCORD_API_URL", &fake.url)
        .with("DISCORD_ALLOWED", &allowed.join(","));
    stack.ocg(&["start"]);
    wait(Duration::from_secs(60), Duration::from_millis(20), || {
        fake.connected()
    });
    through_fake(
        &stack,
        "Discord",
        "fake Gateway → gateway → agent → fake LLM → fake REST",
        |p, text| {
            fake.push_dm(&user(p), text);
        },
        |p| fake.texts_to(&fake_discord::dm_channel(&user(p))),
    )
    .await;
}

async fn slack(bin: &Path, llm: &str) {
    const BOT_TOKEN: &str = "xoxb-1111-2222-benchbottoken";
    const APP_TOKEN: &str = "xapp-1-A0001-3333-benchapptoken";
    let fake = fake_slack::start(BOT_TOKEN, APP_TOKEN);
    let user = |p: usize| format!("UBENCH{p:04}");
    let allowed: Vec<String> = (0..=PEOPLE).map(user).collect();
    let stack = BenchStack::new(bin, llm, TOKEN)
        .with("SLACK_BOT_TOKEN", BOT_TOKEN)
        .with("SLACK_APP_TOKEN", APP_TOKEN)
        .with("SLACK_API_URL", &fake.url)
        .with("SLACK_ALLOWED", &allowed.join(","));
    stack.ocg(&["start"]);
    wait(Duration::from_secs(60), Duration::from_millis(20), || {
        fake.connected()
    });
    through_fake(
        &stack,
        "Slack",
        "fake Socket Mode → gateway → agent → fake LLM → fake Web API",
        |p, text| {
            fake.push_dm(&user(p), text);
        },
        |p| fake.texts_to(&fake_slack::dm_channel(&user(p))),
    )
    .await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bin = Path::new(&args.next().unwrap_or_else(|| "target/release".into())).canonicalize()?;
    let which = args.next();
    let llm = fake_llm::start_openai();
    if which.as_deref().is_none_or(|w| w == "matrix") {
        matrix(&bin, &llm.base_url).await;
    }
    if which.as_deref().is_none_or(|w| w == "email") {
        email(&bin, &llm.base_url).await;
    }
    if which.as_deref().is_none_or(|w| w == "discord") {
        discord(&bin, &llm.base_url).await;
    }
    if which.as_deref().is_none_or(|w| w == "slack") {
        slack(&bin, &llm.base_url).await;
    }
    Ok(())
}

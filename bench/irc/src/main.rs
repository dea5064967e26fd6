//! Run with: bench/irc.sh   (builds release binaries, then runs this)
//!
//! Chat turns through the IRC channel — a person's client → a real ngircd →
//! gateway (journal, allow-list, flood limiter) → agent → fake LLM → back
//! through ngircd — against the same turns sent to the same gateway and
//! agent through the OpenAI-compatible API (the baseline: the same agent
//! turn without the channel), in the same run.
//!
//! - Throughput: 50 people with 2 direct messages each, all sent at once;
//!   the baseline is 50 concurrent API clients with 2 turns each.
//! - Latency: one message at a time, from the person's `PRIVMSG` to the
//!   reply arriving at their client, against request to response.
//!
//! The bot's own flood limiter (5 lines at once, then one per 700 ms) is
//! what a real network needs; it is the ceiling of the channel's sending
//! rate and the table shows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ocg_tests::bench::{BenchStack, Measured, api_throughput, api_turn, print_channel_table};
use ocg_tests::fake_llm;
use ocg_tests::irc_server::{Human, Ircd};

const TOKEN: &str = "benchmark-token-0123456789abcdef";
const PEOPLE: usize = 50;
const PER_PERSON: usize = 2;
const SEQUENTIAL: usize = 100;

/// Wait until `who` has `n` replies from the bot.
fn wait_replies(who: &Human, n: usize, limit: Duration) {
    let start = Instant::now();
    while who.from("ocg").len() < n {
        assert!(
            start.elapsed() < limit,
            "only {} of {n} replies arrived",
            who.from("ocg").len()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = Path::new(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release".into()),
    )
    .canonicalize()?;
    let llm = fake_llm::start_openai();
    let ircd = Ircd::start();
    let stack = BenchStack::new(&bin, &llm.base_url, TOKEN)
        .with("IRC_SERVER", &format!("127.0.0.1:{}", ircd.port))
        .with("IRC_TLS", "false")
        .with("IRC_NICK", "ocg")
        .with("IRC_ALLOWED", "*!*@127.0.0.1");
    stack.ocg(&["start"]);
    let api = format!("http://127.0.0.1:{}/v1/chat/completions", stack.port);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?;
    let solo = Human::connect(ircd.port, "solo");
    // The bot registers after the stack starts.
    std::thread::sleep(Duration::from_secs(2));

    // Warm-up, both paths.
    for n in 0..10 {
        api_turn(&client, &api, TOKEN, "warm", &format!("w{n}")).await;
        solo.say("ocg", &format!("w{n}"));
        wait_replies(&solo, n + 1, Duration::from_secs(30));
    }

    // Latency, one message at a time (each reply is one line: within the
    // limiter's burst, so this is the channel's own cost).
    let mut direct = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        direct.push(api_turn(&client, &api, TOKEN, "seq", &format!("seq-{n}")).await);
    }
    let mut channel = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        let before = solo.from("ocg").len();
        let start = Instant::now();
        solo.say("ocg", &format!("seq-{n}"));
        wait_replies(&solo, before + 1, Duration::from_secs(30));
        channel.push(start.elapsed().as_secs_f64() * 1000.0);
        // Let the limiter's bucket refill, so each message is measured alone.
        std::thread::sleep(Duration::from_millis(750));
    }

    // Throughput: 50 × 2 through the API, then through IRC.
    let direct_rate = api_throughput(&client, &api, TOKEN, "p", (PEOPLE, PER_PERSON)).await;
    let total = PEOPLE * PER_PERSON;

    let people: Vec<Human> = (0..PEOPLE)
        .map(|p| Human::connect(ircd.port, &format!("p{p}")))
        .collect();
    let start = Instant::now();
    for n in 0..PER_PERSON {
        for (p, person) in people.iter().enumerate() {
            person.say("ocg", &format!("p{p}-{n}"));
        }
    }
    for person in &people {
        wait_replies(person, PER_PERSON, Duration::from_secs(900));
    }
    let channel_rate = total as f64 / start.elapsed().as_secs_f64();
    for (p, person) in people.iter().enumerate() {
        let texts: Vec<String> = person.from("ocg").into_iter().map(|s| s.text).collect();
        let expected: Vec<String> = (0..PER_PERSON).map(|n| format!("echo: p{p}-{n}")).collect();
        assert_eq!(texts, expected, "p{p} answered in order, once each");
    }
    stack.ocg(&["stop"]);

    print_channel_table(
        (
            "IRC",
            "client → ngircd → gateway → agent → fake LLM → ngircd → client",
        ),
        (&format!("{PEOPLE} people × {PER_PERSON}"), SEQUENTIAL),
        Measured {
            latency_ms: direct,
            rate: direct_rate,
        },
        Measured {
            latency_ms: channel,
            rate: channel_rate,
        },
    );
    println!();
    println!(
        "The channel's rate is bounded by its flood limiter: 5 lines at once, then 1 per 700 ms (1.4/s)."
    );
    Ok(())
}

//! Run with: bench/telegram.sh   (builds release binaries, then runs this)
//!
//! Chat turns through the Telegram channel — fake Telegram Bot API →
//! gateway (long polling, journal, allow-list, HTML, typing) → agent → fake
//! LLM — against the same turns sent to the same gateway and agent through
//! the OpenAI-compatible API (the baseline: the same agent turn without the
//! channel), in the same run.
//!
//! - Throughput: 100 chats with 10 messages each, all queued at once; the
//!   baseline is 100 concurrent API clients with 10 turns each, one session
//!   per client.
//! - Latency: one message at a time in one chat. For the channel it is
//!   measured from the moment the fake hands the update out (`getUpdates`)
//!   to the moment it receives the `sendMessage`; for the baseline, request
//!   to response. The difference is what the channel adds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ocg_tests::bench::{BenchStack, Measured, api_throughput, api_turn, print_channel_table};
use ocg_tests::fake_llm;
use ocg_tests::fake_telegram::{self, FakeTelegram};

const TOKEN: &str = "benchmark-token-0123456789abcdef";
const BOT: &str = "4242:bench-bot-token";
const CHATS: i64 = 100;
const PER_CHAT: usize = 10;
const SEQUENTIAL: usize = 200;

/// Wait until `n` messages have been sent in total; the elapsed time.
fn wait_sent(telegram: &FakeTelegram, n: usize, start: Instant) -> Duration {
    assert!(
        telegram.wait(Duration::from_secs(600), |t| t.sent().len() >= n),
        "only {} of {n} replies arrived",
        telegram.sent().len()
    );
    start.elapsed()
}

/// Run `messages` (chat, text) through the fake Telegram one at a time;
/// receive-to-send latency of each, in ms.
fn channel_latencies(telegram: &FakeTelegram, chat: i64, count: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let before = telegram.sent().len();
        let text = format!("seq-{n}");
        let id = telegram.push_text(chat, &text);
        wait_sent(telegram, before + 1, Instant::now());
        let sent = telegram.sent();
        let reply = sent
            .iter()
            .rev()
            .find(|s| s.text == format!("echo: {text}"))
            .expect("the reply");
        let received = telegram.delivered_at(id).expect("delivered");
        out.push(reply.at.duration_since(received).as_secs_f64() * 1000.0);
    }
    out
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
    let telegram = fake_telegram::start(BOT);
    let chats: Vec<String> = (1..=CHATS + 1).map(|c| c.to_string()).collect();
    let stack = BenchStack::new(&bin, &llm.base_url, TOKEN)
        .with("TELEGRAM_BOT_TOKEN", BOT)
        .with("TELEGRAM_API_URL", &telegram.url)
        .with("TELEGRAM_ALLOWED_CHATS", &chats.join(","));
    stack.ocg(&["start"]);
    let api = format!("http://127.0.0.1:{}/v1/chat/completions", stack.port);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()?;

    // Warm-up: both paths, a few turns each.
    for n in 0..20 {
        api_turn(&client, &api, TOKEN, "warm", &format!("w{n}")).await;
    }
    channel_latencies(&telegram, CHATS + 1, 20);

    // Latency, one message at a time.
    let mut direct = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL {
        direct.push(api_turn(&client, &api, TOKEN, "seq", &format!("seq-{n}")).await);
    }
    let channel = channel_latencies(&telegram, CHATS + 1, SEQUENTIAL);

    // Throughput: 100 chats × 10 messages, all at once.
    let direct_rate = api_throughput(&client, &api, TOKEN, "c", (CHATS as usize, PER_CHAT)).await;

    let before = telegram.sent().len();
    let start = Instant::now();
    for n in 0..PER_CHAT {
        for chat in 1..=CHATS {
            telegram.push_text(chat, &format!("c{chat}-{n}"));
        }
    }
    let total = CHATS as usize * PER_CHAT;
    let elapsed = wait_sent(&telegram, before + total, start);
    let channel_rate = total as f64 / elapsed.as_secs_f64();
    // Every chat's replies arrived in order.
    let mut per_chat: HashMap<String, Vec<String>> = HashMap::new();
    for sent in &telegram.sent()[before..] {
        per_chat
            .entry(sent.chat_id.clone())
            .or_default()
            .push(sent.text.clone());
    }
    for (chat, texts) in &per_chat {
        let expected: Vec<String> = (0..PER_CHAT)
            .map(|n| format!("echo: c{chat}-{n}"))
            .collect();
        assert_eq!(texts, &expected, "chat {chat} in order");
    }

    print_channel_table(
        ("Telegram", "fake Bot API → gateway → agent → fake LLM"),
        (&format!("{CHATS} chats × {PER_CHAT}"), SEQUENTIAL),
        Measured {
            latency_ms: direct,
            rate: direct_rate,
        },
        Measured {
            latency_ms: channel,
            rate: channel_rate,
        },
    );
    Ok(())
}

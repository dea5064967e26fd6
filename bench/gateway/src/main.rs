//! Run with: bench/gateway.sh   (builds release binaries, then runs this)
//!
//! The whole chain against its last hop: requests through the real gateway →
//! agent → the fast fake model ([`FastModel`]), against the same fake called
//! directly (the baseline), in the same run; then throughput at 1, 16 and 64
//! clients. Then idle WebSockets held open
//! against the gateway, with its RSS. Prints one table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ocg_tests::bench::{BenchStack, percentile, rss_mb};
use ocg_tests::fast_model::FastModel;

const TOKEN: &str = "benchmark-token-0123456789abcdef";
const REQUESTS: usize = 1000;
const CONCURRENCY: usize = 64;
const THROUGHPUT_REQUESTS: usize = 6400;
/// Turns per conversation: a session's history grows to this many turns.
const TURNS_PER_CHAT: usize = 8;

fn body(stream: bool, user: Option<String>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]
    });
    if let Some(user) = user {
        body["user"] = user.into();
    }
    body
}

/// One request read to the end: (total ms, first body chunk ms).
async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (f64, f64) {
    let start = Instant::now();
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut stream = response.bytes_stream();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        // The first chunk carrying content (past the role-only chunk).
        if first.is_none() && String::from_utf8_lossy(&chunk).contains("\"content\":\"Hello") {
            first = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let total = start.elapsed().as_secs_f64() * 1000.0;
    (total, first.unwrap_or(total))
}

async fn load(
    url: String,
    token: Option<&'static str>,
    stream: bool,
    concurrency: usize,
) -> (Vec<f64>, Vec<f64>, f64) {
    load_n(url, token, stream, concurrency, REQUESTS).await
}

/// `requests` requests from `concurrency` clients; each client keeps to its
/// own sessions. Returns (totals, first chunks, requests per second).
async fn load_n(
    url: String,
    token: Option<&'static str>,
    stream: bool,
    concurrency: usize,
    requests: usize,
) -> (Vec<f64>, Vec<f64>, f64) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..requests / concurrency {
                // Each client holds conversations of TURNS_PER_CHAT turns,
                // each in a session of its own.
                let user = token.map(|_| format!("bench{run}-{worker}-{}", i / TURNS_PER_CHAT));
                out.push(timed(&client, &url, token, &body(stream, user)).await);
            }
            out
        }));
    }
    let (mut totals, mut firsts) = (Vec::new(), Vec::new());
    for task in tasks {
        for (t, f) in task.await.unwrap() {
            totals.push(t);
            firsts.push(f);
        }
    }
    let rate = totals.len() as f64 / start.elapsed().as_secs_f64();
    (totals, firsts, rate)
}

async fn hold_websockets(
    port: u16,
    n: usize,
) -> Vec<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
{
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut request = format!("ws://127.0.0.1:{port}/v1/chat/stream")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        sockets.push(socket);
    }
    sockets
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = Path::new(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release".into()),
    )
    .canonicalize()?;
    let fake = FastModel::start();
    let stack = BenchStack::new(&bin, &fake.base_url, TOKEN);
    stack.ocg(&["start"]);
    let gateway = format!("http://127.0.0.1:{}/v1/chat/completions", stack.port);
    let direct = format!("{}/chat/completions", fake.base_url);

    // Warm-up.
    load(direct.clone(), None, true, 4).await;
    load(gateway.clone(), Some(TOKEN), true, 4).await;

    println!();
    println!(
        "Gateway → agent → fake LLM, against the fake LLM alone (baseline), release build, same run,"
    );
    println!("{REQUESTS} requests per row, 2 cores. Latency in ms.");
    println!();
    println!(
        "| case | baseline p50 / p99 | through gateway p50 / p99 | added p50 / p99 | req/s baseline / gateway (ratio) |"
    );
    println!("|---|---|---|---|---|");
    for (name, stream, concurrency) in [
        ("non-streaming, 1 client", false, 1),
        ("streaming, time to first token, 1 client", true, 1),
        ("streaming, 64 clients", true, CONCURRENCY),
    ] {
        let (mut b_total, mut b_first, b_rate) =
            load(direct.clone(), None, stream, concurrency).await;
        let (mut g_total, mut g_first, g_rate) =
            load(gateway.clone(), Some(TOKEN), stream, concurrency).await;
        let (b, g) = if name.contains("first token") {
            (&mut b_first, &mut g_first)
        } else {
            (&mut b_total, &mut g_total)
        };
        let (b50, b99, g50, g99) = (
            percentile(b, 0.5),
            percentile(b, 0.99),
            percentile(g, 0.5),
            percentile(g, 0.99),
        );
        println!(
            "| {name} | {b50:.3} / {b99:.3} | {g50:.3} / {g99:.3} | {:.3} / {:.3} | {b_rate:.0} / {g_rate:.0} ({:.2}x) |",
            g50 - b50,
            g99 - b99,
            g_rate / b_rate
        );
    }

    println!();
    println!(
        "Throughput, non-streaming turns, each stored durably before its answer ({THROUGHPUT_REQUESTS} per row;"
    );
    println!("baseline: the fast fake model alone, non-streaming). Goal ≥ 0.25× at 16 clients.");
    println!();
    println!("| clients | fake alone turns/s | through gateway turns/s | ratio |");
    println!("|---|---|---|---|");
    for concurrency in [1, 16, 64] {
        let (_, _, b_rate) = load_n(
            direct.clone(),
            None,
            false,
            concurrency,
            THROUGHPUT_REQUESTS,
        )
        .await;
        let (_, _, g_rate) = load_n(
            gateway.clone(),
            Some(TOKEN),
            false,
            concurrency,
            THROUGHPUT_REQUESTS,
        )
        .await;
        println!(
            "| {concurrency} | {b_rate:.0} | {g_rate:.0} | {:.2}x |",
            g_rate / b_rate
        );
    }

    let pid = stack.pid("gateway");
    let idle = rss_mb(pid);
    let first = hold_websockets(stack.port, 1000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_1k = rss_mb(pid);
    let more = hold_websockets(stack.port, 9000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_10k = rss_mb(pid);
    drop((first, more));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mb(pid);
    println!();
    println!(
        "| gateway RSS | idle | 1,000 open WebSockets | 10,000 open WebSockets (goal 50 MB) | 3 s after they closed |"
    );
    println!("|---|---|---|---|---|");
    println!("| MB | {idle:.1} | {at_1k:.1} | {at_10k:.1} | {after:.1} |");
    Ok(())
}

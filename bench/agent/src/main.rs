//! Run with: bench/agent.sh   (builds release binaries, then runs this)
//!
//! Agent overhead per turn. Baseline: the same fake OpenAI-compatible server
//! called directly with the same streamed request, in the same run. The
//! agent runs as the real release binary on a temporary socket, storing
//! every turn in SQLite. Prints one table; then one session's turn cost at
//! turn 1, 10,000 and 100,000 against a fresh session's, and the agent's RSS
//! with 16 long sessions running at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ocg_tests::bench::{self, BenchAgent, percentile, rss_mb, rss_parts_mb};
use ocg_tests::fast_model::FastModel;

const TURNS: usize = 2000;
const CONCURRENCY: usize = 32;
const RSS_TURNS: usize = 10_000;
/// Where one long session's turns are timed, and how many each time.
const LONG_MARKS: [usize; 3] = [1, 10_000, 100_000];
const LONG_WINDOW: usize = 500;
/// Sessions run at once for the memory row, and turns each.
const PARALLEL_SESSIONS: usize = 16;
const PARALLEL_TURNS: usize = 5_000;

fn start_agent(bin: &Path, llm_url: &str) -> BenchAgent {
    // A local model's window rather than gpt-4o-mini's 128k tokens: the
    // agent compacts a session as it outgrows it, so a long session's turn
    // carries a bounded history (at 128k tokens of "hi" a turn would send
    // some 12,000 messages).
    bench::start_agent(bin, llm_url, &[("OCG_CONTEXT_WINDOW", "8192")])
}

/// One streamed completion from the fake, read to the end: (total, first chunk).
async fn direct(client: &reqwest::Client, url: &str) -> (f64, f64) {
    let start = Instant::now();
    let body = serde_json::json!({
        "model": "gpt-4o-mini", "stream": true,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    });
    let response = client
        .post(format!("{url}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
        first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1000.0);
    }
    (start.elapsed().as_secs_f64() * 1000.0, first.unwrap_or(0.0))
}

async fn run<F, Fut>(n: usize, concurrency: usize, f: F) -> (Vec<f64>, Vec<f64>, f64)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (f64, f64)> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..n / concurrency {
                out.push(f(worker * 1_000_000 + i).await);
            }
            out
        }));
    }
    let mut totals = Vec::new();
    let mut firsts = Vec::new();
    for task in tasks {
        for (total, first) in task.await.unwrap() {
            totals.push(total);
            firsts.push(first);
        }
    }
    let rate = totals.len() as f64 / start.elapsed().as_secs_f64();
    (totals, firsts, rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/ocg-agent"))
        .canonicalize()?;
    let fake = FastModel::start();
    let agent = start_agent(&bin, &fake.base_url);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let unix = reqwest::Client::builder()
        .unix_socket(agent.socket.as_path())
        .build()?;
    let rss_start = rss_mb(agent.child.id());
    // `BENCH_AGENT_ONLY=parallel`: only the memory row, in a fresh agent.
    if std::env::var("BENCH_AGENT_ONLY").as_deref() == Ok("parallel") {
        parallel_sessions(&unix, &agent).await;
        return Ok(());
    }

    // Warm up both paths.
    for i in 0..50 {
        direct(&http, &fake.base_url).await;
        bench::socket_turn(&unix, &format!("warm:{i}")).await;
    }

    let mut rows = Vec::new();
    for concurrency in [1, CONCURRENCY] {
        let url = fake.base_url.clone();
        let client = http.clone();
        let (mut base, mut base_first, base_rate) = run(TURNS, concurrency, move |_| {
            let client = client.clone();
            let url = url.clone();
            async move { direct(&client, &url).await }
        })
        .await;
        let client = unix.clone();
        let (mut agent_t, mut agent_first, agent_rate) = run(TURNS, concurrency, move |i| {
            let client = client.clone();
            // 100 sessions per worker, so histories stay realistic in length.
            async move {
                bench::socket_turn(&client, &format!("bench:{}:{}", i / 1_000_000, i % 100)).await
            }
        })
        .await;
        rows.push((
            concurrency,
            percentile(&mut base, 0.5),
            percentile(&mut base, 0.99),
            percentile(&mut agent_t, 0.5),
            percentile(&mut agent_t, 0.99),
            percentile(&mut base_first, 0.5),
            percentile(&mut agent_first, 0.5),
            base_rate,
            agent_rate,
        ));
    }

    let client = unix.clone();
    let done_before = rows.len() * TURNS + 50;
    run(RSS_TURNS.saturating_sub(done_before), 8, move |i| {
        let client = client.clone();
        async move { bench::socket_turn(&client, &format!("rss:{}", i % 500)).await }
    })
    .await;
    let rss_end = rss_mb(agent.child.id());

    println!();
    println!(
        "Agent overhead per turn: real ocg-agent (release) over its Unix socket, streamed, SQLite storage,"
    );
    println!(
        "vs the same fake OpenAI-compatible server called directly (baseline), same run, {TURNS} turns per row."
    );
    println!();
    println!(
        "| sessions in parallel | direct p50 / p99 (ms) | agent p50 / p99 (ms) | overhead p50 / p99 (ms) | first token direct / agent p50 (ms) | turns/s direct / agent (ratio) |"
    );
    println!("|---|---|---|---|---|---|");
    for (c, b50, b99, a50, a99, bf, af, br, ar) in rows {
        println!(
            "| {c} | {b50:.3} / {b99:.3} | {a50:.3} / {a99:.3} | {:.3} / {:.3} | {bf:.3} / {af:.3} | {br:.0} / {ar:.0} ({:.2}x) |",
            a50 - b50,
            a99 - b99,
            ar / br
        );
    }
    println!();
    println!(
        "RSS of ocg-agent: {rss_start:.1} MB at start, {rss_end:.1} MB after {RSS_TURNS} turns (budget 30 MB)"
    );

    // One session, grown to 100,000 turns (compacted by the agent as it
    // grows); at each mark, LONG_WINDOW of its turns are timed, then as
    // many turns of fresh one-turn sessions, in the same run.
    println!();
    println!(
        "One session's turn through the agent at its turn 1, 10,000 and 100,000, against a fresh session's turn right after ({LONG_WINDOW} turns each):"
    );
    println!();
    println!(
        "| session length (turns) | long session p50 / p99 (ms) | fresh session p50 / p99 (ms) | ratio p50 |"
    );
    println!("|---:|---:|---:|---:|");
    let mut turns = 0;
    for mark in LONG_MARKS {
        while turns + 1 < mark {
            bench::socket_turn(&unix, "long").await;
            turns += 1;
        }
        let mut long = Vec::with_capacity(LONG_WINDOW);
        for _ in 0..LONG_WINDOW {
            long.push(bench::socket_turn(&unix, "long").await.0);
            turns += 1;
        }
        let mut fresh = Vec::with_capacity(LONG_WINDOW);
        for i in 0..LONG_WINDOW {
            fresh.push(
                bench::socket_turn(&unix, &format!("fresh:{mark}:{i}"))
                    .await
                    .0,
            );
        }
        let (l50, l99, f50, f99) = (
            percentile(&mut long, 0.5),
            percentile(&mut long, 0.99),
            percentile(&mut fresh, 0.5),
            percentile(&mut fresh, 0.99),
        );
        println!(
            "| {mark} | {l50:.3} / {l99:.3} | {f50:.3} / {f99:.3} | {:.2}x |",
            l50 / f50
        );
    }

    parallel_sessions(&unix, &agent).await;
    Ok(())
}

/// The memory row: PARALLEL_SESSIONS sessions taking PARALLEL_TURNS turns
/// each at once, then the agent's resident memory.
async fn parallel_sessions(unix: &reqwest::Client, agent: &BenchAgent) {
    let client = unix.clone();
    let (_, _, rate) = run(
        PARALLEL_SESSIONS * PARALLEL_TURNS,
        PARALLEL_SESSIONS,
        move |i| {
            let client = client.clone();
            async move { bench::socket_turn(&client, &format!("parallel:{}", i / 1_000_000)).await }
        },
    )
    .await;
    let (rss, anon, file) = rss_parts_mb(agent.child.id());
    // The agent hands freed memory back after a second without turns.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, idle_anon, idle_file) = rss_parts_mb(agent.child.id());
    println!();
    println!(
        "RSS of ocg-agent after {PARALLEL_SESSIONS} sessions ran {PARALLEL_TURNS} turns each at once ({rate:.0} turns/s), goal 30 MB:"
    );
    println!();
    println!(
        "| when | RSS (MB) | anonymous (MB) | file-backed: code, mapped database pages (MB) |"
    );
    println!("|---|---:|---:|---:|");
    println!("| as the last turn ends | {rss:.1} | {anon:.1} | {file:.1} |");
    println!("| 3 s later (idle) | {idle:.1} | {idle_anon:.1} | {idle_file:.1} |");
}

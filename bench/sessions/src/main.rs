//! Does a turn cost the same at turn 100,000 as at turn 1?
//!
//! For each session length N (1, 10,000 and 100,000 turns by default), a
//! session database on disk gets a long session of N turns (two messages
//! each), compacted the way the agent keeps it (all but the last 20 messages
//! archived under a summary), and a short session of one turn. Then the
//! store work of one turn, as the agent does it, is timed on each: load
//! the context, append the turn (one transaction), list the sessions (what
//! the web UI asks after every answer). The short session in the same
//! database is the baseline, so the ratio shows what the session's length
//! costs, not the database's size.
//!
//! `bench-sessions [N ...]`

use std::time::Instant;

use ocg_agent_lib::sessions::{NewMessage, SessionStore, SqliteSessionStore};
use ocg_core::Message;
use ocg_tests::bench::percentile;

const SAMPLES: usize = 300;
const KEEP_LIVE: usize = 20;

fn turn(i: usize) -> Vec<NewMessage> {
    vec![
        NewMessage {
            message: Message::user(format!("question {i}: what is on my list today?")),
            tokens: 12,
        },
        NewMessage {
            message: Message::assistant(format!(
                "answer {i}: three things, the dentist at ten, the invoice, and a call."
            )),
            tokens: 20,
        },
    ]
}

/// Time one turn's store work on `key`, `SAMPLES` times; (p50, p99) in ms.
async fn per_turn(store: &dyn SessionStore, key: &str, from: usize) -> anyhow::Result<(f64, f64)> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        store.context(key).await?;
        store.append_turn(key, turn(from + i)).await?;
        store.list().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lengths: Vec<usize> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
        Ok(list) if !Vec::<usize>::is_empty(&list) => list,
        _ => vec![1, 10_000, 100_000],
    };
    println!(
        "Session store, per-turn work (context + append_turn + list), {SAMPLES} turns per row;\n\
         baseline: a one-turn session in the same database. Goal: ratio ≈ 1 at any length.\n"
    );
    println!(
        "| session length (turns) | fill (s) | long p50 / p99 (ms) | short p50 / p99 (ms) | ratio p50 |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &length in &lengths {
        let dir = tempfile::tempdir()?;
        let store = SqliteSessionStore::open(&dir.path().join("ocg.db"))?;
        let filled = Instant::now();
        for i in 0..length {
            store.append_turn("long", turn(i)).await?;
        }
        let fill = filled.elapsed().as_secs_f64();
        let live = store.context("long").await?.messages;
        if live.len() > KEEP_LIVE {
            let up_to = live[live.len() - KEEP_LIVE - 1].id;
            store
                .compact("long", up_to, "summary of the older turns".into())
                .await?;
        }
        store.append_turn("short", turn(0)).await?;
        let (long50, long99) = per_turn(&store, "long", length).await?;
        let (short50, short99) = per_turn(&store, "short", 1).await?;
        println!(
            "| {length} | {fill:.1} | {long50:.3} / {long99:.3} | {short50:.3} / {short99:.3} | {:.2}× |",
            long50 / short50
        );
    }
    Ok(())
}

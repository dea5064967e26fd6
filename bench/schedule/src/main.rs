//! Run with: bench/schedule.sh   (builds release binaries, then runs this)
//!
//! The scheduler's cost with 10,000 jobs in the real release `ocg-agent`
//! (a fast fake model behind it): CPU used and RSS while idle, against the
//! same agent holding no job (baseline), and the delay from an occurrence's
//! due time to its turn's start and end, for 100 jobs due in the same second
//! against one job due alone in a warm agent (baseline). Prints one table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ocg_tests::bench::{self, BenchAgent, percentile, rss_mb};
use ocg_tests::fast_model::FastModel;
use serde_json::{Value, json};

const JOBS: usize = 10_000;
const BURST: usize = 100;
const IDLE: Duration = Duration::from_secs(30);

struct Agent {
    inner: BenchAgent,
    client: reqwest::Client,
}

fn start_agent(bin: &Path, llm_url: &str) -> Agent {
    let inner = bench::start_agent(bin, llm_url, &[("OCG_AUTO_RECALL", "false")]);
    let client = reqwest::Client::builder()
        .unix_socket(inner.socket.as_path())
        .build()
        .unwrap();
    Agent { inner, client }
}

impl Agent {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("http://agent{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// CPU seconds used so far (user + system, from /proc, in USER_HZ).
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.inner.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// Ticks per thread (name, ticks), for `BENCH_THREADS=1`.
    fn thread_ticks(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{}/task", self.inner.child.id())).unwrap() {
            let stat =
                std::fs::read_to_string(entry.unwrap().path().join("stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let name = head
                .split_once(" (")
                .map(|(_, n)| n.to_owned())
                .unwrap_or_default();
            let fields: Vec<&str> = rest.split(' ').collect();
            let ticks =
                fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
            out.push((name, ticks));
        }
        out
    }

    /// CPU % and RSS over `IDLE` with nothing due.
    async fn idle(&self) -> (f64, f64) {
        // Let start-up and the memory release after the set-up end first.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let threads = std::env::var("BENCH_THREADS").is_ok();
        if threads {
            eprintln!("threads before: {:?}", self.thread_ticks());
        }
        let before = self.cpu_secs();
        tokio::time::sleep(IDLE).await;
        let used = self.cpu_secs() - before;
        if threads {
            eprintln!("threads after: {:?}", self.thread_ticks());
        }
        (
            100.0 * used / IDLE.as_secs_f64(),
            rss_mb(self.inner.child.id()),
        )
    }

    /// `count` one-shot jobs due in the same second (see [`bench::job_burst`]).
    async fn burst(&self, count: usize) -> (Vec<f64>, Vec<f64>) {
        bench::job_burst(&self.client, count).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/ocg-agent"))
        .canonicalize()?;
    let fake = FastModel::start();

    let empty = start_agent(&bin, &fake.base_url);
    let (base_cpu, base_rss) = empty.idle().await;
    // The first turn of a process opens its connection to the model: warm up.
    empty.burst(1).await;
    let (mut alone_start, mut alone_end) = empty.burst(1).await;
    drop(empty);

    let agent = start_agent(&bin, &fake.base_url);
    let created = Instant::now();
    for n in 0..JOBS {
        let job = json!({
            "schedule": if n % 2 == 0 {
                json!({"kind": "every", "every": "1d"})
            } else {
                json!({"kind": "cron", "expr": format!("{} 3 * * *", n % 60), "tz": "Europe/Berlin"})
            },
            "message": format!("job {n}"),
        });
        agent.post("/v1/jobs", job).await;
    }
    let create_rate = JOBS as f64 / created.elapsed().as_secs_f64();
    let (cpu, rss) = agent.idle().await;
    let (mut starts, mut ends) = agent.burst(BURST).await;

    println!();
    println!(
        "The scheduler in the real ocg-agent (release), fast fake model; idle over {} s; baselines in the same run.",
        IDLE.as_secs()
    );
    println!();
    println!("| measure | baseline | with {JOBS} jobs | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| idle CPU (% of one core), no job vs {JOBS} jobs | {base_cpu:.3} | {cpu:.3} | {:.2}x |",
        if base_cpu > 0.0 {
            cpu / base_cpu
        } else {
            f64::NAN
        }
    );
    println!(
        "| idle RSS (MB), no job vs {JOBS} jobs | {base_rss:.1} | {rss:.1} | {:.2}x |",
        rss / base_rss
    );
    let (a50, s50, s99) = (
        percentile(&mut alone_start, 0.5),
        percentile(&mut starts, 0.5),
        percentile(&mut starts, 0.99),
    );
    let (e_a50, e50, e99) = (
        percentile(&mut alone_end, 0.5),
        percentile(&mut ends, 0.5),
        percentile(&mut ends, 0.99),
    );
    println!(
        "| due to turn start (ms), 1 job alone vs {BURST} due in one second: p50 / p99 | {a50:.0} | {s50:.0} / {s99:.0} | {:.2}x p99 |",
        s99 / a50.max(1.0)
    );
    println!(
        "| due to turn end (ms), same: p50 / p99 | {e_a50:.0} | {e50:.0} / {e99:.0} | {:.2}x p99 |",
        e99 / e_a50.max(1.0)
    );
    println!();
    println!("Jobs created through the socket: {create_rate:.0}/s.");
    Ok(())
}

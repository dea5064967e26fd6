//! Run with: bench/postgres.sh   (builds release binaries)
//!
//! The same 20,000 vectors of 384 dimensions (the size of the default
//! embedding model's), clustered the way embeddings of related texts are,
//! stored in the embedding service (FAISS HNSW, M 32, efSearch 64: the
//! baseline) and in PostgreSQL with pgvector (`ocg-postgres`, HNSW M 32),
//! then 200 queries, one at a time, through each store's client: recall@10
//! against the exact answer, and latency. pgvector is measured at several
//! `ef_search` values, so its latency can be read at the recall FAISS has.
//!
//! Then whole agent turns (the release `ocg-agent` against a fake model
//! that answers at once) with sessions in SQLite (the baseline) and in
//! PostgreSQL (`OCG_DATABASE_URL`): the latency one at a time and the turns
//! per second 16 sessions at once, and the delay of 100 scheduled jobs due
//! in the same second in either store. `BENCH_POSTGRES_ONLY=turns` runs only
//! those two tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocg_core::testing::DeterministicEmbedder;
use ocg_core::{SearchQuery, SearchRequest, VectorItem, VectorStore};
use ocg_postgres::PgVectorStore;
use ocg_tests::bench::vectors::{Noise, exact_top, normalized, recall};
use ocg_tests::bench::{self, percentile};
use ocg_tests::fast_model::FastModel;
use ocg_tests::postgres_server::Postgres;
use serde_json::{Value, json};

const N: usize = 20_000;
const DIMENSION: usize = 384;
const CLUSTERS: usize = 200;
const QUERIES: usize = 200;
const TOKEN: &str = "bench-embedding-token-0123456789abcdef0123456789abcdef";

/// A point near a random one of `centers`.
fn near(noise: &mut Noise, centers: &[Vec<f32>]) -> Vec<f32> {
    let center = &centers[(noise.0 % centers.len() as u64) as usize];
    let jitter = noise.unit(DIMENSION);
    normalized(
        center
            .iter()
            .zip(&jitter)
            .map(|(c, j)| c + 2.0 * j)
            .collect(),
    )
}

struct Row {
    store: String,
    ef: usize,
    recall: f64,
    latency_ms: Vec<f64>,
}

/// The embedding service of `bin`, without a model (vectors only).
fn embedding_service(bin: &Path, dir: &Path) -> (std::process::Child, String) {
    let port = ocg_tests::free_port();
    let child = std::process::Command::new(bin.join("ocg-embedding"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("OCG_DATA_DIR", dir.join("data"))
        .env("OCG_PID_DIR", dir.join("run"))
        .env("OCG_LOG_DIR", dir.join("logs"))
        .env("OCG_EMBEDDING_PORT", port.to_string())
        .env("OCG_EMBEDDING_PORT_MAX", (port + 20).to_string())
        .env("OCG_EMBEDDING_TOKEN", TOKEN)
        .env("EMBEDDING_MODEL_PATH", "/nonexistent/model.gguf")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = dir.join("run/ocg-embedding.addr");
    let start = Instant::now();
    while !addr.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the embedding service did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        child,
        std::fs::read_to_string(addr).unwrap().trim().to_owned(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = Path::new(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release".into()),
    )
    .canonicalize()?;
    if std::env::var("BENCH_POSTGRES_ONLY").as_deref() == Ok("turns") {
        let pg = Postgres::start();
        return turns(&bin, &pg.create_database("turns")).await;
    }
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let centers: Vec<Vec<f32>> = (0..CLUSTERS).map(|_| noise.unit(DIMENSION)).collect();
    let data: Vec<Vec<f32>> = (0..N).map(|_| near(&mut noise, &centers)).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| near(&mut noise, &centers)).collect();
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact_top(&data, q, 10)).collect();
    let mut rows = Vec::new();

    // FAISS through the embedding service's HTTP API (the baseline).
    let dir = tempfile::tempdir()?;
    let (mut service, base) = embedding_service(&bin, dir.path());
    let http = reqwest::Client::builder().no_proxy().build()?;
    let post = |path: &str, body: Value| {
        let request = http
            .post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    let started = Instant::now();
    for (chunk, from) in data.chunks(250).zip((0..N).step_by(250)) {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": (from + i).to_string(), "vector": v}))
            .collect();
        post("/collections/bench/items", json!({"items": items})).await;
    }
    let faiss_load = started.elapsed();
    let mut found = Vec::new();
    let mut latency = Vec::new();
    for query in &queries {
        let start = Instant::now();
        let answer = post(
            "/search",
            json!({"collection": "bench", "vector": query, "top_k": 10}),
        )
        .await;
        latency.push(start.elapsed().as_secs_f64() * 1000.0);
        found.push(
            answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().parse().unwrap())
                .collect::<Vec<usize>>(),
        );
    }
    rows.push(Row {
        store: "FAISS HNSW (embedding service, HTTP)".into(),
        ef: 64,
        recall: recall(&found, &truth, 10),
        latency_ms: latency,
    });
    let _ = service.kill();
    let _ = service.wait();

    // pgvector through ocg-postgres.
    let pg = Postgres::start();
    let url = pg.create_database("bench");
    let pool = ocg_postgres::open(&url).await?;
    let embedder = Arc::new(DeterministicEmbedder::new(DIMENSION));
    let loader = PgVectorStore::new(pool.clone(), embedder.clone());
    let started = Instant::now();
    for (chunk, from) in data.chunks(1000).zip((0..N).step_by(1000)) {
        let items: Vec<VectorItem> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| VectorItem {
                id: (from + i).to_string(),
                text: None,
                vector: Some(v.clone()),
                metadata: serde_json::Map::new(),
            })
            .collect();
        loader.upsert("bench", &items).await?;
    }
    let pg_load = started.elapsed();
    for ef in [40, 64, 100, 200] {
        let store = PgVectorStore::new(pool.clone(), embedder.clone()).with_ef_search(ef);
        let mut found = Vec::new();
        let mut latency = Vec::new();
        for query in &queries {
            let request = SearchRequest {
                collection: "bench".into(),
                query: SearchQuery::Vector(query.clone()),
                top_k: 10,
                min_score: None,
                filter: serde_json::Map::new(),
                hybrid: false,
            };
            let start = Instant::now();
            let hits = store.search(&request).await?;
            latency.push(start.elapsed().as_secs_f64() * 1000.0);
            found.push(
                hits.iter()
                    .map(|h| h.id.parse().unwrap())
                    .collect::<Vec<usize>>(),
            );
        }
        rows.push(Row {
            store: "pgvector HNSW (ocg-postgres)".into(),
            ef,
            recall: recall(&found, &truth, 10),
            latency_ms: latency,
        });
    }

    let baseline_p50 = percentile(&mut rows[0].latency_ms.clone(), 0.5);
    let baseline_recall = rows[0].recall;
    println!(
        "\n{N} vectors of {DIMENSION} in {CLUSTERS} clusters, {QUERIES} queries one at a time, top 10; release build, same run.\n\
         Loading: FAISS {:.1} s (HTTP, 250 a request), pgvector {:.1} s (1,000 an upsert, the graph built as rows arrive).\n",
        faiss_load.as_secs_f64(),
        pg_load.as_secs_f64()
    );
    println!("| store | ef_search | recall@10 | p50 ms | p99 ms | p50 / FAISS |");
    println!("|---|---|---|---|---|---|");
    let mut equal = None;
    for (n, row) in rows.iter_mut().enumerate() {
        let p50 = percentile(&mut row.latency_ms, 0.5);
        let p99 = percentile(&mut row.latency_ms, 0.99);
        if n > 0 && equal.is_none() && row.recall >= baseline_recall {
            equal = Some((row.ef, p50));
        }
        println!(
            "| {} | {} | {:.3} | {p50:.2} | {p99:.2} | {:.2}x |",
            row.store,
            row.ef,
            row.recall,
            p50 / baseline_p50
        );
    }
    match equal {
        Some((ef, p50)) => println!(
            "\nAt FAISS's recall ({baseline_recall:.3}): pgvector with ef_search {ef}, p50 {p50:.2} ms = {:.2}x FAISS's {baseline_p50:.2} ms.",
            p50 / baseline_p50
        ),
        None => println!(
            "\npgvector did not reach FAISS's recall ({baseline_recall:.3}) at these ef_search values."
        ),
    }
    turns(&bin, &pg.create_database("turns")).await
}

/// Turns timed one at a time, over this many sessions.
const SEQUENTIAL_TURNS: usize = 400;
const SEQUENTIAL_SESSIONS: usize = 20;
/// Sessions at once, and turns each, for the rate.
const PARALLEL_SESSIONS: usize = 16;
const PARALLEL_TURNS: usize = 50;
/// Jobs due in one second, per store.
const JOB_BURST: usize = 100;

/// Agent turns with sessions in SQLite, then in PostgreSQL at `url`.
async fn turns(bin: &Path, url: &str) -> anyhow::Result<()> {
    let model = FastModel::start();
    let (mut rows, mut bursts) = (Vec::new(), Vec::new());
    for (store, database) in [("SQLite (default)", None), ("PostgreSQL", Some(url))] {
        let mut env = vec![("OCG_AUTO_RECALL", "false")];
        env.extend(database.map(|url| ("OCG_DATABASE_URL", url)));
        let agent = bench::start_agent(&bin.join("ocg-agent"), &model.base_url, &env);
        let client = reqwest::Client::builder()
            .unix_socket(agent.socket.as_path())
            .build()?;
        // Until the store answers (PostgreSQL's schema is applied at start).
        let ready = Instant::now();
        loop {
            let answer = client
                .post("http://agent/v1/chat/stream")
                .json(&json!({"session_key": "warm:0", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await?
                .text()
                .await?;
            if answer.contains("\"type\":\"done\"") {
                break;
            }
            assert!(ready.elapsed() < Duration::from_secs(30), "{answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for i in 0..50 {
            bench::socket_turn(&client, &format!("warm:{i}")).await;
        }
        let mut latency = Vec::with_capacity(SEQUENTIAL_TURNS);
        for i in 0..SEQUENTIAL_TURNS {
            latency.push(
                bench::socket_turn(&client, &format!("one:{}", i % SEQUENTIAL_SESSIONS))
                    .await
                    .0,
            );
        }
        let started = Instant::now();
        let tasks: Vec<_> = (0..PARALLEL_SESSIONS)
            .map(|s| {
                let client = client.clone();
                tokio::spawn(async move {
                    for _ in 0..PARALLEL_TURNS {
                        bench::socket_turn(&client, &format!("many:{s}")).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let rate = (PARALLEL_SESSIONS * PARALLEL_TURNS) as f64 / started.elapsed().as_secs_f64();
        rows.push((
            store,
            percentile(&mut latency, 0.5),
            percentile(&mut latency, 0.99),
            rate,
        ));
        // Scheduled jobs in the same store: a burst due in one second.
        bench::job_burst(&client, 1).await;
        let (mut starts, mut ends) = bench::job_burst(&client, JOB_BURST).await;
        bursts.push((
            store,
            percentile(&mut starts, 0.5),
            percentile(&mut starts, 0.99),
            percentile(&mut ends, 0.99),
        ));
    }
    let (_, base_p50, _, base_rate) = rows[0];
    println!(
        "\nAgent turns (release ocg-agent, a fake model answering at once, memory recall off): \
         {SEQUENTIAL_TURNS} turns one at a time over {SEQUENTIAL_SESSIONS} sessions, then \
         {PARALLEL_SESSIONS} sessions at once, {PARALLEL_TURNS} turns each; PostgreSQL on this machine, over TCP.\n"
    );
    println!(
        "| sessions in | p50 ms | p99 ms | added p50 ms | turns/s ({PARALLEL_SESSIONS} at once) | turns/s / SQLite |"
    );
    println!("|---|---|---|---|---|---|");
    for (store, p50, p99, rate) in rows {
        println!(
            "| {store} | {p50:.2} | {p99:.2} | {:+.2} | {rate:.0} | {:.2}x |",
            p50 - base_p50,
            rate / base_rate
        );
    }
    let (_, _, base_start99, _) = bursts[0];
    println!(
        "\nScheduled jobs in the same agents: {JOB_BURST} one-shot jobs due in the same second, \
         from their due time (the scheduler wakes at it) to their turns' start and end.\n"
    );
    println!(
        "| jobs in | to start p50 ms | to start p99 ms | to end p99 ms | start p99 / SQLite |"
    );
    println!("|---|---|---|---|---|");
    for (store, start50, start99, end99) in bursts {
        println!(
            "| {store} | {start50:.0} | {start99:.0} | {end99:.0} | {:.2}x |",
            start99 / base_start99.max(1.0)
        );
    }
    Ok(())
}

//! Run with: bench/embedding.sh   (builds release binaries, prepares the data
//! and the faiss-cpu wheels, then runs this and prints one table)
//!
//! `bench-embedding index <dir>`: our FAISS index (ocg-embed's `VectorIndex`,
//! HNSW) on `<dir>/base.f32` and `<dir>/queries.f32`, recall@10 against
//! `<dir>/gt.i64`, one query per call, for a sweep of efSearch. One JSON line,
//! named by the FAISS level the loader mapped (bench/embedding.sh runs it
//! once as the loader chooses, then under `ld.so --glibc-hwcaps-mask` for
//! each lower level).
//!
//! `bench-embedding http <dir>`: the release `ocg-embedding` with the real
//! model. Baseline: the same `llama-server` child, called directly in the same
//! run. Then `/search` over HTTP on a 100k collection. One JSON line.
//!
//! `bench-embedding hybrid`: hybrid search (vector + FTS5 keywords) against
//! vector-only search (the baseline) on 10,000 items with generated texts:
//! in process on `CollectionStore` (the search alone), then over HTTP with a
//! text query on the release `ocg-embedding` with the real model (query
//! embedding included, as the agent's recall pays it). One JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use ocg_embed::index::{FaissLibrary, HnswParams, IndexKind, VectorIndex, normalize};
use ocg_embed::store::{CollectionStore, PreparedItem};
use ocg_tests::bench::EmbeddingService;
use serde_json::{Value, json};

const DIMENSION: usize = 384;
const EF_SWEEP: [u32; 9] = [16, 24, 32, 48, 64, 96, 128, 192, 256];

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn read_i64(path: &Path) -> Vec<i64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn index_bench(dir: &Path, m: u32, ef_construction: u32) -> Value {
    let base = read_f32(&dir.join("base.f32"));
    let queries = read_f32(&dir.join("queries.f32"));
    let truth = read_i64(&dir.join("gt.i64"));
    let n = base.len() / DIMENSION;
    let labels: Vec<i64> = (0..n as i64).collect();
    let params = HnswParams {
        threshold: 1,
        m,
        ef_construction,
        ..HnswParams::default()
    };
    let started = Instant::now();
    let mut index = VectorIndex::build(DIMENSION, &labels, &base, params).unwrap();
    let build = started.elapsed().as_secs_f64();
    assert_eq!(index.kind(), IndexKind::Hnsw);
    let mut sweep = Vec::new();
    for ef in EF_SWEEP {
        index.set_ef_search(ef).unwrap();
        let started = Instant::now();
        let mut found = 0usize;
        for (q, query) in queries.chunks(DIMENSION).enumerate() {
            let hits = index.search(query, 10).unwrap();
            let truth = &truth[q * 10..q * 10 + 10];
            found += hits.iter().filter(|h| truth.contains(&h.0)).count();
        }
        let secs = started.elapsed().as_secs_f64();
        let nq = queries.len() / DIMENSION;
        sweep.push(
            json!({ "ef": ef, "qps": nq as f64 / secs, "recall": found as f64 / (nq * 10) as f64 }),
        );
    }
    let level = FaissLibrary::loaded().map_or_else(|| "static".to_owned(), |faiss| faiss.level);
    json!({ "name": format!("ocg-embed, FAISS 1.12.0 {level}"), "build_s": build, "sweep": sweep })
}

/// One timed POST, in milliseconds.
async fn timed(http: &reqwest::Client, url: &str, body: &Value) -> f64 {
    let started = Instant::now();
    let response = http.post(url).json(body).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.unwrap();
    started.elapsed().as_secs_f64() * 1000.0
}

/// Time `targets` in interleaved rounds (so drift in the machine's load hits
/// them alike), after `warmup` untimed rounds; the samples of each.
async fn rounds(
    http: &reqwest::Client,
    targets: &[(String, Value)],
    warmup: usize,
    runs: usize,
) -> Vec<Vec<f64>> {
    let mut samples = vec![Vec::with_capacity(runs); targets.len()];
    for round in 0..warmup + runs {
        for (i, (url, body)) in targets.iter().enumerate() {
            let ms = timed(http, url, body).await;
            if round >= warmup {
                samples[i].push(ms);
            }
        }
    }
    samples
}

async fn http_bench(dir: &Path, bin_dir: &Path) -> Value {
    let service = EmbeddingService::start(bin_dir, &[("OCG_EMBED_MAX_BATCH", "1000")]);
    let http = authorized_client(&service);
    let info: Value = http
        .get(format!("{}/info", service.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let llama = format!("http://127.0.0.1:{}", info["llama"]["port"]);
    let sentence = "The quick brown fox jumps over the lazy dog.";
    let single = [
        (
            format!("{llama}/v1/embeddings"),
            json!({ "input": [sentence] }),
        ),
        (
            format!("{}/embed", service.url),
            json!({ "text": sentence }),
        ),
        (
            format!("{}/v1/embeddings", service.url),
            json!({ "input": sentence }),
        ),
    ];
    let mut latencies = rounds(&http, &single, 20, 300).await;
    let texts: Vec<String> = (0..64)
        .map(|i| {
            format!(
                "Sentence number {i} is about topic {} and a few more words.",
                i % 7
            )
        })
        .collect();
    let batch = [
        (format!("{llama}/v1/embeddings"), json!({ "input": texts })),
        (format!("{}/embed", service.url), json!({ "texts": texts })),
        (
            format!("{}/v1/embeddings", service.url),
            json!({ "input": texts }),
        ),
    ];
    let batches = rounds(&http, &batch, 1, 21).await;
    let stats = |i: usize, latencies: &mut Vec<Vec<f64>>| {
        // Median batch time: robust to other work on a shared machine.
        let throughput = 64.0 / (percentile(&mut batches[i].clone(), 0.5) / 1000.0);
        json!({
            "p50": percentile(&mut latencies[i], 0.5),
            "p99": percentile(&mut latencies[i], 0.99),
            "tp": throughput,
        })
    };
    let (direct, embed, openai) = (
        stats(0, &mut latencies),
        stats(1, &mut latencies),
        stats(2, &mut latencies),
    );

    // /search end to end on a 100k collection, by vector.
    let base = read_f32(&dir.join("base.f32"));
    let queries = read_f32(&dir.join("queries.f32"));
    let started = Instant::now();
    for (chunk_index, chunk) in base.chunks(DIMENSION * 1000).enumerate() {
        let items: Vec<Value> = chunk
            .chunks(DIMENSION)
            .enumerate()
            .map(|(i, v)| json!({ "id": format!("i{}", chunk_index * 1000 + i), "vector": v }))
            .collect();
        let response = http
            .post(format!("{}/collections/bench/items", service.url))
            .json(&json!({ "items": items }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
    let load = started.elapsed().as_secs_f64();
    let mut samples = Vec::new();
    for (q, query) in queries.chunks(DIMENSION).enumerate().take(1000) {
        let started = Instant::now();
        let response = http
            .post(format!("{}/search", service.url))
            .json(&json!({ "collection": "bench", "vector": query, "top_k": 10 }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        response.bytes().await.unwrap();
        if q >= 50 {
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let search = (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    );
    json!({
        "direct": direct,
        "embed": embed,
        "openai": openai,
        "search": { "p50": search.0, "p99": search.1, "load_s": load },
    })
}

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Generated notes: words drawn from a Zipf-like vocabulary (English
/// function words most frequent, then 5,000 made-up words), some with a
/// name or an order number, so the keyword index has very common, middling
/// and unique tokens.
struct TextMaker {
    words: Vec<String>,
    cumulative: Vec<f64>,
    names: Vec<String>,
}

impl TextMaker {
    fn new(rng: &mut Rng) -> Self {
        let syllables = [
            "ka", "lo", "mi", "ter", "san", "vel", "dor", "pi", "ru", "nex", "bal", "cor", "fin",
            "gra", "hol", "jin", "mar", "nor", "pel", "quo", "ris", "sul", "tam", "ung", "vor",
        ];
        let mut words: Vec<String> = [
            "the", "a", "is", "to", "of", "and", "in", "my", "on", "for", "with", "at", "it",
        ]
        .iter()
        .map(|w| w.to_string())
        .collect();
        while words.len() < 5_000 {
            let n = 2 + (rng.next() % 2) as usize;
            let word: String = (0..n)
                .map(|_| syllables[(rng.next() % syllables.len() as u64) as usize])
                .collect();
            if !words.contains(&word) {
                words.push(word);
            }
        }
        let mut total = 0.0;
        let cumulative = (0..words.len())
            .map(|rank| {
                total += 1.0 / (rank as f64 + 1.0);
                total
            })
            .collect();
        let names = (0..500)
            .map(|i| format!("Name{i:03}{}", syllables[i % syllables.len()]))
            .collect();
        TextMaker {
            words,
            cumulative,
            names,
        }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    fn note(&self, rng: &mut Rng, i: usize) -> String {
        let length = 8 + (rng.next() % 13) as usize;
        let mut words: Vec<String> = (0..length).map(|_| self.word(rng).to_owned()).collect();
        if i % 3 == 0 {
            words.push(format!("order {}", 100_000 + i));
        }
        if i % 5 == 0 {
            words.push(self.names[i % self.names.len()].clone());
        }
        words.join(" ")
    }

    /// A question of a few words; half name an order number or a person.
    fn query(&self, rng: &mut Rng, items: usize) -> String {
        let mut words: Vec<String> = (0..3 + (rng.next() % 5) as usize)
            .map(|_| self.word(rng).to_owned())
            .collect();
        match rng.next() % 4 {
            0 => words.push(format!(
                "order {}",
                100_000 + (rng.next() as usize % items) / 3 * 3
            )),
            1 => words.push(self.names[rng.next() as usize % self.names.len()].clone()),
            _ => {}
        }
        words.join(" ")
    }
}

fn random_unit(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMENSION).map(|_| rng.unit() as f32 - 0.5).collect();
    normalize(&mut v);
    v
}

const HYBRID_ITEMS: usize = 10_000;

async fn hybrid_bench(bin_dir: &Path) -> Value {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let maker = TextMaker::new(&mut rng);
    let items: Vec<(String, String, Vec<f32>)> = (0..HYBRID_ITEMS)
        .map(|i| {
            (
                format!("n{i}"),
                maker.note(&mut rng, i),
                random_unit(&mut rng),
            )
        })
        .collect();
    let queries: Vec<(String, Vec<f32>)> = (0..500)
        .map(|_| (maker.query(&mut rng, HYBRID_ITEMS), random_unit(&mut rng)))
        .collect();

    // In process: the store's search alone, interleaved.
    let dir = tempfile::tempdir().unwrap();
    let store = CollectionStore::open(
        &dir.path().join("e.db"),
        &dir.path().join("idx"),
        HnswParams::default(),
    )
    .unwrap();
    store.create("notes", DIMENSION).unwrap();
    for chunk in items.chunks(1000) {
        let prepared = chunk
            .iter()
            .map(|(id, text, vector)| PreparedItem {
                id: id.clone(),
                text: Some(text.clone()),
                vector: vector.clone(),
                metadata: Default::default(),
                model: None,
            })
            .collect();
        store.upsert("notes", prepared).unwrap();
    }
    let none = serde_json::Map::new();
    let (mut vector_ms, mut hybrid_ms) = (Vec::new(), Vec::new());
    for (round, (text, vector)) in queries.iter().enumerate() {
        let started = Instant::now();
        let plain = store.search("notes", vector, 10, None, &none).unwrap();
        let plain_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let hits = store
            .hybrid_search("notes", vector, text, 10, None, &none)
            .unwrap();
        let both_ms = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(plain.len(), 10);
        assert_eq!(hits.len(), 10);
        if round >= 50 {
            vector_ms.push(plain_ms);
            hybrid_ms.push(both_ms);
        }
    }
    drop(store);

    // Over HTTP with a text query: embedding + search, as the agent recalls.
    let service = EmbeddingService::start(bin_dir, &[("OCG_EMBED_MAX_BATCH", "1000")]);
    let http = authorized_client(&service);
    for chunk in items.chunks(1000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|(id, text, vector)| json!({ "id": id, "text": text, "vector": vector }))
            .collect();
        let response = http
            .post(format!("{}/collections/notes/items", service.url))
            .json(&json!({ "items": batch }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let url = format!("{}/search", service.url);
    let (mut http_vector, mut http_hybrid) = (Vec::new(), Vec::new());
    for (round, (text, _)) in queries.iter().take(350).enumerate() {
        let plain = timed(
            &http,
            &url,
            &json!({ "collection": "notes", "text": text, "top_k": 10 }),
        )
        .await;
        let both = timed(
            &http,
            &url,
            &json!({ "collection": "notes", "text": text, "top_k": 10, "hybrid": true }),
        )
        .await;
        if round >= 50 {
            http_vector.push(plain);
            http_hybrid.push(both);
        }
    }
    // Paired differences (hybrid minus vector-only, same query, back to
    // back): the keyword part's own cost, robust to the machine's load.
    let mut store_extra: Vec<f64> = hybrid_ms
        .iter()
        .zip(&vector_ms)
        .map(|(h, v)| h - v)
        .collect();
    let mut http_extra: Vec<f64> = http_hybrid
        .iter()
        .zip(&http_vector)
        .map(|(h, v)| h - v)
        .collect();
    let stats = |samples: &mut Vec<f64>| json!({ "p50": percentile(samples, 0.5), "p99": percentile(samples, 0.99) });
    json!({
        "items": HYBRID_ITEMS,
        "store_extra_p50": percentile(&mut store_extra, 0.5),
        "http_extra_p50": percentile(&mut http_extra, 0.5),
        "store_vector": stats(&mut vector_ms),
        "store_hybrid": stats(&mut hybrid_ms),
        "http_vector": stats(&mut http_vector),
        "http_hybrid": stats(&mut http_hybrid),
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(2).map_or(".", String::as_str));
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let mode = args
        .get(1)
        .expect("usage: bench-embedding index|http|hybrid [dir]");
    let result = match mode.as_str() {
        "index" => {
            let m = std::env::var("HNSW_M")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(32);
            let efc = std::env::var("HNSW_EFC")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40);
            tokio::task::spawn_blocking(move || index_bench(&dir, m, efc))
                .await
                .unwrap()
        }
        "http" => http_bench(&dir, &bin_dir).await,
        "hybrid" => hybrid_bench(&bin_dir).await,
        other => panic!("unknown mode {other}"),
    };
    println!("{result}");
}

/// An HTTP client that sends the service's token.
fn authorized_client(service: &EmbeddingService) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", service.token.expose());
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .build()
        .unwrap()
}

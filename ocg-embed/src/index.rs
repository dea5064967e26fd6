//! The FAISS index of one collection.
//!
//! Vectors are L2-normalized, so inner product is cosine similarity. Small
//! collections live in an exact `IDMap,Flat` index; from
//! [`HnswParams::threshold`] items on, in `IDMap,HNSW{M},Flat`. Labels are the
//! store's never-reused item labels.
//!
//! HNSW cannot remove vectors, so removals there become tombstones that are
//! filtered out of every search (fetching `k + tombstones` candidates), and
//! the owner rebuilds the index once they pass
//! [`HnswParams::tombstone_share`] of it.

use std::collections::HashSet;
use std::path::Path;

use faiss::index::autotune::ParameterSpace;
use faiss::index::{Idx, IndexImpl, index_factory};
use faiss::selector::IdSelector;
use faiss::{Index, MetricType};
use serde::{Deserialize, Serialize};

use crate::EmbedError;

/// When and how collections switch to HNSW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// Live items from which a collection is indexed with HNSW (`OCG_HNSW_THRESHOLD`).
    pub threshold: usize,
    /// Links per node (`OCG_HNSW_M`).
    pub m: u32,
    /// Candidate list while building (`OCG_HNSW_EF_CONSTRUCTION`).
    pub ef_construction: u32,
    /// Candidate list while searching (`OCG_HNSW_EF_SEARCH`).
    pub ef_search: u32,
    /// Share of tombstones past which an HNSW index is rebuilt.
    pub tombstone_share: f32,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            threshold: 10_000,
            m: 32,
            ef_construction: 40,
            ef_search: 64,
            tombstone_share: 0.2,
        }
    }
}

/// The kind of a collection's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Exact inner-product search.
    Flat,
    /// Approximate search over an HNSW graph.
    Hnsw,
}

impl IndexKind {
    /// The kind for a collection of `live` items.
    pub fn for_size(live: usize, params: &HnswParams) -> Self {
        if live >= params.threshold {
            IndexKind::Hnsw
        } else {
            IndexKind::Flat
        }
    }
}

/// One collection's FAISS index plus the labels it holds.
#[derive(Debug)]
pub struct VectorIndex {
    kind: IndexKind,
    dimension: usize,
    index: IndexImpl,
    labels: HashSet<i64>,
    tombstones: HashSet<i64>,
    params: HnswParams,
}

fn create(dimension: usize, kind: IndexKind, params: &HnswParams) -> Result<IndexImpl, EmbedError> {
    let description = match kind {
        IndexKind::Flat => "IDMap,Flat".to_owned(),
        IndexKind::Hnsw => format!("IDMap,HNSW{},Flat", params.m),
    };
    let dimension = u32::try_from(dimension)
        .map_err(|_| EmbedError::invalid("invalid_vector", "dimension too large"))?;
    let index = index_factory(dimension, description, MetricType::InnerProduct)?;
    if kind == IndexKind::Hnsw {
        let space = ParameterSpace::new()?;
        space.set_index_parameter(&index, "efConstruction", f64::from(params.ef_construction))?;
        space.set_index_parameter(&index, "efSearch", f64::from(params.ef_search))?;
    }
    Ok(index)
}

impl VectorIndex {
    /// An empty index of `kind`.
    pub fn new(dimension: usize, kind: IndexKind, params: HnswParams) -> Result<Self, EmbedError> {
        Ok(VectorIndex {
            kind,
            dimension,
            index: create(dimension, kind, &params)?,
            labels: HashSet::new(),
            tombstones: HashSet::new(),
            params,
        })
    }

    /// An index of the right kind holding `labels` with their `vectors`
    /// (concatenated, `dimension` each).
    pub fn build(
        dimension: usize,
        labels: &[i64],
        vectors: &[f32],
        params: HnswParams,
    ) -> Result<Self, EmbedError> {
        let mut index = Self::new(
            dimension,
            IndexKind::for_size(labels.len(), &params),
            params,
        )?;
        index.add(labels, vectors)?;
        Ok(index)
    }

    /// Its kind.
    pub fn kind(&self) -> IndexKind {
        self.kind
    }

    /// Vector length.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Items that searches can find.
    pub fn live(&self) -> usize {
        self.labels.len() - self.tombstones.len()
    }

    /// Labels held, tombstoned ones included.
    pub fn labels(&self) -> &HashSet<i64> {
        &self.labels
    }

    /// Tombstoned labels (HNSW only).
    pub fn tombstones(&self) -> &HashSet<i64> {
        &self.tombstones
    }

    /// Whether a label is searchable.
    pub fn contains(&self, label: i64) -> bool {
        self.labels.contains(&label) && !self.tombstones.contains(&label)
    }

    /// Add vectors (normalized, `dimension` each) under new labels.
    pub fn add(&mut self, labels: &[i64], vectors: &[f32]) -> Result<(), EmbedError> {
        if labels.is_empty() {
            return Ok(());
        }
        if vectors.len() != labels.len() * self.dimension {
            return Err(EmbedError::Internal(format!(
                "{} floats for {} vectors of {}",
                vectors.len(),
                labels.len(),
                self.dimension
            )));
        }
        let ids: Vec<Idx> = labels.iter().map(|&l| Idx::new(l as u64)).collect();
        self.index.add_with_ids(vectors, &ids)?;
        self.labels.extend(labels.iter().copied());
        Ok(())
    }

    /// Remove labels: at once from a flat index, as tombstones from HNSW.
    pub fn remove(&mut self, labels: &[i64]) -> Result<(), EmbedError> {
        let present: Vec<i64> = labels
            .iter()
            .copied()
            .filter(|l| self.contains(*l))
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        match self.kind {
            IndexKind::Flat => {
                let ids: Vec<Idx> = present.iter().map(|&l| Idx::new(l as u64)).collect();
                let selector = IdSelector::batch(&ids)?;
                self.index.remove_ids(&selector)?;
                for label in &present {
                    self.labels.remove(label);
                }
            }
            IndexKind::Hnsw => self.tombstones.extend(present),
        }
        Ok(())
    }

    /// Whether the owner should rebuild: too many tombstones, or the
    /// collection crossed the HNSW threshold one way or the other.
    pub fn wants_rebuild(&self) -> bool {
        let live = self.live();
        let tombstoned = self.tombstones.len() as f32
            > self.params.tombstone_share * self.labels.len().max(1) as f32;
        let kind = match self.kind {
            IndexKind::Flat => live >= self.params.threshold,
            // Hysteresis: shrink back to exact search well below the threshold.
            IndexKind::Hnsw => live < self.params.threshold / 2,
        };
        tombstoned || kind
    }

    /// The `k` best live labels for a normalized `query`, best first, with
    /// their cosine similarity.
    pub fn search(&mut self, query: &[f32], k: usize) -> Result<Vec<(i64, f32)>, EmbedError> {
        let live = self.live();
        if live == 0 || k == 0 {
            return Ok(Vec::new());
        }
        // Tombstones are rare between rebuilds: ask for a few more than `k`,
        // and for twice as many again while too few live hits come back.
        let total = self.labels.len();
        let mut fetch = (k + self.tombstones.len().min(k.max(16))).min(total);
        let mut hits = Vec::with_capacity(k);
        loop {
            hits.clear();
            let result = self.index.search(query, fetch)?;
            for (label, score) in result.labels.iter().zip(result.distances.iter()) {
                let Some(label) = label.get() else { continue };
                let label = label as i64;
                if self.tombstones.contains(&label) {
                    continue;
                }
                hits.push((label, score.clamp(-1.0, 1.0)));
                if hits.len() == k {
                    break;
                }
            }
            if hits.len() >= k.min(live) || fetch >= total {
                break;
            }
            fetch = (fetch * 2).min(total);
        }
        Ok(hits)
    }

    /// Write the FAISS index to `path` (the caller renames it into place).
    pub fn write(&self, path: &Path) -> Result<(), EmbedError> {
        let path = path
            .to_str()
            .ok_or_else(|| EmbedError::Internal(format!("non-UTF-8 path {}", path.display())))?;
        faiss::write_index(&self.index, path)?;
        Ok(())
    }

    /// Read an index written by [`write`](Self::write), with the labels and
    /// tombstones recorded beside it.
    pub fn read(
        path: &Path,
        kind: IndexKind,
        dimension: usize,
        labels: HashSet<i64>,
        tombstones: HashSet<i64>,
        params: HnswParams,
    ) -> Result<Self, EmbedError> {
        let path_str = path
            .to_str()
            .ok_or_else(|| EmbedError::Internal(format!("non-UTF-8 path {}", path.display())))?;
        let index = faiss::read_index(path_str)?;
        if index.d() as usize != dimension || index.ntotal() as usize != labels.len() {
            return Err(EmbedError::Internal(format!(
                "{} holds {} vectors of {}, expected {} of {dimension}",
                path.display(),
                index.ntotal(),
                index.d(),
                labels.len()
            )));
        }
        if kind == IndexKind::Hnsw {
            let space = ParameterSpace::new()?;
            space.set_index_parameter(&index, "efSearch", f64::from(params.ef_search))?;
        }
        Ok(VectorIndex {
            kind,
            dimension,
            index,
            labels,
            tombstones,
            params,
        })
    }

    /// The FAISS index itself, for searches with parameters.
    pub(crate) fn raw_mut(&mut self) -> &mut IndexImpl {
        &mut self.index
    }

    /// Set HNSW's `efSearch` (no effect on a flat index).
    pub fn set_ef_search(&mut self, ef_search: u32) -> Result<(), EmbedError> {
        if self.kind == IndexKind::Hnsw {
            let space = ParameterSpace::new()?;
            space.set_index_parameter(&self.index, "efSearch", f64::from(ef_search))?;
            self.params.ef_search = ef_search;
        }
        Ok(())
    }
}

/// The FAISS library this process runs, as the dynamic loader chose it.
///
/// FAISS is linked as a shared library built once per SIMD level
/// (`scripts/setup-faiss.sh`); the loader maps the best level the CPU runs
/// from its `glibc-hwcaps` subdirectories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaissLibrary {
    /// The file that is mapped.
    pub path: String,
    /// `generic` (baseline), or the glibc-hwcaps level: `x86-64-v3` (AVX2),
    /// `x86-64-v4` (AVX-512).
    pub level: String,
}

impl FaissLibrary {
    /// The `libfaiss.so` mapped into this process (`/proc/self/maps`), if
    /// FAISS is linked dynamically. The loader maps it once, at start, so
    /// the maps are read once.
    pub fn loaded() -> Option<FaissLibrary> {
        static LOADED: std::sync::OnceLock<Option<FaissLibrary>> = std::sync::OnceLock::new();
        LOADED
            .get_or_init(|| {
                let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
                maps.lines().find_map(FaissLibrary::from_maps_line)
            })
            .clone()
    }

    fn from_maps_line(line: &str) -> Option<FaissLibrary> {
        let path = Path::new(line.split_whitespace().nth(5)?);
        if path.file_name()? != "libfaiss.so" {
            return None;
        }
        let parent = path.parent()?;
        let level = match parent.parent().and_then(Path::file_name) {
            Some(name) if name == "glibc-hwcaps" => {
                parent.file_name()?.to_string_lossy().into_owned()
            }
            _ => "generic".to_owned(),
        };
        Some(FaissLibrary {
            path: path.display().to_string(),
            level,
        })
    }
}

/// Scale `vector` to unit length in place; `false` when it has no length or
/// a component is not finite.
pub fn normalize(vector: &mut [f32]) -> bool {
    if vector.iter().any(|x| !x.is_finite()) {
        return false;
    }
    let norm = vector
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    vector
        .iter_mut()
        .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit_vectors(n: usize, dimension: usize, seed: u64) -> Vec<f32> {
        // xorshift64*: deterministic, no dependency.
        let mut state = seed.max(1);
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (bits >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut data: Vec<f32> = (0..n * dimension).map(|_| next()).collect();
        for chunk in data.chunks_mut(dimension) {
            assert!(normalize(chunk));
        }
        data
    }

    #[test]
    fn hnsw_recall_at_10_matches_exact_search() {
        let (n, dimension, queries) = (5_000, 64, 50);
        let params = HnswParams {
            threshold: 1_000,
            ..HnswParams::default()
        };
        let data = random_unit_vectors(n, dimension, 7);
        let labels: Vec<i64> = (1..=n as i64).collect();
        let mut exact = VectorIndex::new(dimension, IndexKind::Flat, params).unwrap();
        exact.add(&labels, &data).unwrap();
        let mut hnsw = VectorIndex::build(dimension, &labels, &data, params).unwrap();
        assert_eq!(hnsw.kind(), IndexKind::Hnsw);
        let query_data = random_unit_vectors(queries, dimension, 99);
        let mut found = 0;
        for query in query_data.chunks(dimension) {
            let truth: HashSet<i64> = exact
                .search(query, 10)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            let approx = hnsw.search(query, 10).unwrap();
            found += approx.iter().filter(|h| truth.contains(&h.0)).count();
        }
        let recall = found as f32 / (queries * 10) as f32;
        assert!(recall >= 0.9, "recall@10 {recall}");
    }

    #[test]
    fn identical_vector_scores_one_and_removals_disappear() {
        let params = HnswParams {
            threshold: 10,
            ..HnswParams::default()
        };
        let data = random_unit_vectors(100, 16, 3);
        let labels: Vec<i64> = (100..200).collect();
        for kind in [IndexKind::Flat, IndexKind::Hnsw] {
            let mut index = VectorIndex::new(16, kind, params).unwrap();
            index.add(&labels, &data).unwrap();
            let hits = index.search(&data[16..32], 3).unwrap();
            assert_eq!(hits[0].0, 101);
            assert!((hits[0].1 - 1.0).abs() < 1e-5, "{hits:?}");
            index.remove(&[101]).unwrap();
            let hits = index.search(&data[16..32], 3).unwrap();
            assert!(hits.iter().all(|h| h.0 != 101), "{kind:?}: {hits:?}");
            assert_eq!(hits.len(), 3);
            assert_eq!(index.live(), 99);
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let params = HnswParams::default();
        let data = random_unit_vectors(20, 8, 5);
        let labels: Vec<i64> = (1..=20).collect();
        let index = VectorIndex::build(8, &labels, &data, params).unwrap();
        let path = dir.path().join("c.faiss");
        index.write(&path).unwrap();
        let mut back = VectorIndex::read(
            &path,
            IndexKind::Flat,
            8,
            labels.iter().copied().collect(),
            HashSet::new(),
            params,
        )
        .unwrap();
        assert_eq!(back.search(&data[0..8], 1).unwrap()[0].0, 1);
    }

    #[test]
    fn normalize_rejects_what_has_no_direction() {
        assert!(!normalize(&mut [0.0, 0.0]));
        assert!(!normalize(&mut [f32::NAN, 1.0]));
        assert!(!normalize(&mut [f32::INFINITY, 1.0]));
        let mut v = [3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, [0.6, 0.8]);
    }

    #[test]
    fn a_maps_line_names_the_faiss_level() {
        let line = |path: &str| format!("7f2a1c000000-7f2a1c200000 r-xp 00000000 fe:01 123 {path}");
        let v4 =
            FaissLibrary::from_maps_line(&line("/c/faiss/lib/glibc-hwcaps/x86-64-v4/libfaiss.so"));
        assert_eq!(v4.map(|l| l.level), Some("x86-64-v4".to_owned()));
        let generic = FaissLibrary::from_maps_line(&line("/c/faiss/lib/libfaiss.so"));
        assert_eq!(generic.map(|l| l.level), Some("generic".to_owned()));
        assert_eq!(
            FaissLibrary::from_maps_line(&line("/c/faiss/lib/libfaiss_c.so")),
            None
        );
        assert_eq!(
            FaissLibrary::from_maps_line("7f2a1c000000-7f2a1c200000 rw-p 00000000 00:00 0"),
            None
        );
    }

    /// The loader, asked itself (`ld.so --help`), names the glibc-hwcaps
    /// levels this CPU supports; the FAISS mapped into this test must be the
    /// best of the levels that were built.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_loader_maps_the_best_faiss_level_this_cpu_runs() {
        let loaded = FaissLibrary::loaded().expect("libfaiss.so is mapped");
        let dir = Path::new(&loaded.path).parent().expect("a directory");
        let lib_dir = if loaded.level == "generic" {
            dir
        } else {
            dir.parent().and_then(Path::parent).expect("lib dir")
        };
        let help = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--help")
            .output()
            .expect("ld.so --help");
        let help = String::from_utf8_lossy(&help.stdout);
        let supported = |level: &str| {
            help.lines()
                .any(|l| l.trim().starts_with(&format!("{level} (supported")))
        };
        let expected = ["x86-64-v4", "x86-64-v3"]
            .into_iter()
            .find(|level| {
                supported(level)
                    && lib_dir
                        .join("glibc-hwcaps")
                        .join(level)
                        .join("libfaiss.so")
                        .is_file()
            })
            .unwrap_or("generic");
        assert_eq!(
            loaded.level, expected,
            "loaded {}; ld.so says:\n{help}",
            loaded.path
        );
    }
}

//! Searching a collection: by vector (through the index, or exactly from
//! SQLite for a narrow filter) and hybrid (vectors and keywords).

use super::*;

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
    pub(super) fn vector_candidates(
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
    pub(super) fn filter_labels(
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

    pub(super) fn filtered_search(
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
}

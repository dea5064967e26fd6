use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{
    Embedder, Error, Result, SearchHit, SearchQuery, SearchRequest, VectorItem, VectorStore,
};

use super::DeterministicEmbedder;

#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    item: VectorItem,
    vector: Vec<f32>,
}

/// A [`VectorStore`] in memory, embedding texts with an [`Embedder`]
/// ([`DeterministicEmbedder`] by default).
///
/// Search is exact cosine similarity over every item. A `hybrid` search adds
/// 0.3 × the share of the query's words the item contains (capped at 1.0), a
/// crude stand-in for the embedding service's keyword scoring. It can be
/// switched off to act like a service that went away.
#[derive(Clone)]
pub struct InMemoryVectorStore {
    embedder: Arc<dyn Embedder>,
    collections: Arc<Mutex<BTreeMap<String, BTreeMap<String, Stored>>>>,
    next: Arc<Mutex<u64>>,
    down: Arc<Mutex<bool>>,
}

impl std::fmt::Debug for InMemoryVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryVectorStore")
            .finish_non_exhaustive()
    }
}

impl Default for InMemoryVectorStore {
    fn default() -> Self {
        Self::new(Arc::new(DeterministicEmbedder::default()))
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl InMemoryVectorStore {
    /// A store embedding with `embedder`.
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        InMemoryVectorStore {
            embedder,
            collections: Arc::default(),
            next: Arc::default(),
            down: Arc::default(),
        }
    }

    /// Make every call fail with [`Error::Unavailable`] (or work again).
    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    fn fail_when_down(&self) -> Result<()> {
        if *self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::unavailable("embedding", "the fake store is down"));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Stored>>> {
        self.collections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[async_trait]
impl VectorStore for InMemoryVectorStore {
    async fn upsert(&self, collection: &str, items: &[VectorItem]) -> Result<()> {
        self.fail_when_down()?;
        let mut prepared = Vec::with_capacity(items.len());
        for item in items {
            let vector = match (&item.vector, &item.text) {
                (Some(vector), _) => vector.clone(),
                (None, Some(text)) => self.embedder.embed_one(text).await?,
                (None, None) => {
                    return Err(Error::InvalidInput(format!(
                        "item {} has neither text nor vector",
                        item.id
                    )));
                }
            };
            let mut item = item.clone();
            item.vector = None;
            prepared.push((item, vector));
        }
        let mut collections = self.lock();
        let items = collections.entry(collection.to_owned()).or_default();
        for (item, vector) in prepared {
            let seq = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                *next += 1;
                *next
            };
            items.insert(item.id.clone(), Stored { seq, item, vector });
        }
        Ok(())
    }

    async fn delete(&self, collection: &str, ids: &[String]) -> Result<Vec<String>> {
        self.fail_when_down()?;
        let mut collections = self.lock();
        let Some(items) = collections.get_mut(collection) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .filter(|id| items.remove(id.as_str()).is_some())
            .cloned()
            .collect())
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.fail_when_down()?;
        let (query, query_words) = match &request.query {
            SearchQuery::Vector(vector) => (vector.clone(), Vec::new()),
            SearchQuery::Text(text) => (
                self.embedder.embed_one(text).await?,
                if request.hybrid {
                    words(text)
                } else {
                    Vec::new()
                },
            ),
        };
        let collections = self.lock();
        let Some(items) = collections.get(&request.collection) else {
            return Ok(Vec::new());
        };
        let mut hits: Vec<SearchHit> = items
            .values()
            .filter(|s| {
                request
                    .filter
                    .iter()
                    .all(|(k, v)| s.item.metadata.get(k) == Some(v))
            })
            .map(|s| {
                let mut score = cosine(&query, &s.vector);
                if !query_words.is_empty() {
                    let item_words = words(s.item.text.as_deref().unwrap_or(""));
                    let found = query_words
                        .iter()
                        .filter(|w| item_words.contains(w))
                        .count();
                    score = (score + 0.3 * found as f32 / query_words.len() as f32).min(1.0);
                }
                SearchHit {
                    id: s.item.id.clone(),
                    score,
                    text: s.item.text.clone(),
                    metadata: s.item.metadata.clone(),
                }
            })
            .filter(|hit| request.min_score.is_none_or(|min| hit.score >= min))
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(request.top_k);
        Ok(hits)
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<VectorItem>> {
        self.fail_when_down()?;
        Ok(self
            .lock()
            .get(collection)
            .and_then(|items| items.get(id))
            .map(|s| s.item.clone()))
    }

    async fn list(
        &self,
        collection: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VectorItem>, u64)> {
        self.fail_when_down()?;
        let collections = self.lock();
        let Some(items) = collections.get(collection) else {
            return Ok((Vec::new(), 0));
        };
        let mut all: Vec<&Stored> = items.values().collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.seq));
        let page = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|s| s.item.clone())
            .collect();
        Ok((page, items.len() as u64))
    }

    async fn check(&self) -> Result<()> {
        self.fail_when_down()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    fn item(id: &str, text: &str) -> VectorItem {
        VectorItem {
            id: id.into(),
            text: Some(text.into()),
            vector: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn upsert_search_list_delete() {
        let store = InMemoryVectorStore::default();
        block_on(store.upsert(
            "m",
            &[item("a", "the cat sleeps"), item("b", "stock prices")],
        ))
        .unwrap();
        let hits = block_on(store.search(&SearchRequest {
            collection: "m".into(),
            query: SearchQuery::Text("a sleeping cat".into()),
            top_k: 1,
            min_score: None,
            filter: Default::default(),
            hybrid: true,
        }))
        .unwrap();
        assert_eq!(hits[0].id, "a");
        let (page, total) = block_on(store.list("m", 0, 10)).unwrap();
        assert_eq!(total, 2);
        assert_eq!(page[0].id, "b", "newest first");
        assert_eq!(
            block_on(store.delete("m", &["a".into(), "x".into()])).unwrap(),
            ["a"]
        );
        assert!(block_on(store.get("m", "a")).unwrap().is_none());
        assert!(block_on(store.list("nothing", 0, 10)).unwrap().1 == 0);
        store.set_down(true);
        assert_eq!(
            block_on(store.get("m", "b")).unwrap_err().code(),
            "unavailable"
        );
    }
}

use async_trait::async_trait;

use crate::{Embedder, EmbedderInfo, Error, Result};

/// An [`Embedder`] that hashes words into a fixed number of dimensions.
///
/// Texts sharing words get similar vectors, identical texts identical ones.
/// Every vector is L2-normalized; empty texts are rejected like a real
/// embedder rejects them.
#[derive(Debug, Clone)]
pub struct DeterministicEmbedder {
    dimension: usize,
}

impl DeterministicEmbedder {
    /// An embedder of `dimension` (at least 1).
    pub fn new(dimension: usize) -> Self {
        DeterministicEmbedder {
            dimension: dimension.max(1),
        }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimension];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let hash = fnv1a(&word.to_lowercase());
            let bucket = usize::try_from(hash % self.dimension as u64).unwrap_or(0);
            vector[bucket] += if hash & (1 << 63) == 0 { 1.0 } else { -1.0 };
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            vector[0] = 1.0;
        } else {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

impl Default for DeterministicEmbedder {
    fn default() -> Self {
        Self::new(384)
    }
}

#[async_trait]
impl Embedder for DeterministicEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Err(Error::InvalidInput("no texts to embed".into()));
        }
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::InvalidInput(format!("text {index} is empty")));
        }
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }

    async fn info(&self) -> Result<EmbedderInfo> {
        Ok(EmbedderInfo {
            model: "deterministic-hash".into(),
            dimension: self.dimension,
        })
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn shared_words_are_closer_than_unrelated_text() {
        let embedder = DeterministicEmbedder::new(64);
        let texts: Vec<String> = [
            "the cat sat on the mat",
            "a cat on a mat",
            "stock prices fell",
        ]
        .map(String::from)
        .to_vec();
        let v = block_on(embedder.embed(&texts)).unwrap();
        assert!((cosine(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]));
        assert!(block_on(embedder.embed(&["  ".into()])).is_err());
        assert!(block_on(embedder.embed(&[])).is_err());
    }
}

//! Hybrid search scoring: cosine similarity fused with keyword coverage, the
//! meaning of [`SearchRequest::hybrid`](crate::SearchRequest::hybrid) that
//! every [`VectorStore`](crate::VectorStore) keeps (the embedding service
//! over FAISS and SQLite FTS5, `ocg-postgres` over pgvector and Postgres
//! full-text search).
//!
//! A hybrid search (`POST /search` with `"hybrid": true` and a text query)
//! gathers candidates from the vector index and from the keyword index of
//! the items' texts, then gives each candidate one score:
//!
//! ```text
//! fused = c + (1 - c) * KEYWORD_WEIGHT * k        c = max(cosine, 0), k in [0, 1]
//! ```
//!
//! where `k` is the *keyword coverage*: the share of the query's keyword
//! weight whose tokens the item's text holds (by the FTS5 index: the item is
//! in the token's postings). Each distinct query token `t` weighs `idf(t)²`,
//! the square of BM25's inverse document frequency
//! `idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))` (`N` items in the
//! collection, `df` of them containing `t`). Squaring makes the rarest
//! token dominate: in 18 short notes, a name found once weighs 6.5 against
//! 0.6 for `meeting` (8 notes), so "When is the meeting with Wrzesniewska?"
//! puts the one note naming her above the eight meetings (plain idf would
//! weigh the name 2.5 against 0.8 and let the shared words win). Tokens no
//! item contains are left out (they cannot tell items apart), and so are
//! tokens too common to read within the search's postings budget; a query
//! with no token left is a plain vector search. So:
//!
//! - an item sharing no word with the query scores exactly its cosine
//!   (a paraphrase is not penalized);
//! - a rare token (a name, a number, an unusual word) carries most of the
//!   query's weight, so the items holding it rise by up to
//!   `KEYWORD_WEIGHT` of their distance to 1, while words found everywhere
//!   (`the`, `is`) weigh almost nothing;
//! - the score never leaves `[0, 1]` and never falls below the cosine, so a
//!   caller's `min_score` keeps its meaning as "at least this relevant".
//!
//! The query is split into tokens the way the FTS5 table is (`unicode61`
//! with `remove_diacritics 0`: runs of letters and digits, lowercased),
//! leaving out single letters and a short list of English function words
//! ([`STOP_WORDS`]), and each token is searched as a quoted FTS5 string, so
//! no user text is ever parsed as FTS5 query syntax.

use std::collections::HashSet;

/// How far a full keyword match lifts a score towards 1.
pub const KEYWORD_WEIGHT: f32 = 0.6;

/// At most this many distinct query tokens are used (the first ones).
pub const MAX_QUERY_TOKENS: usize = 16;

/// Tokens longer than this (in bytes) are ignored: no word is that long, and
/// FTS5 terms are bounded anyway.
pub const MAX_TOKEN_BYTES: usize = 64;

/// English function words never used as query keywords. In a small
/// collection a word like `a` or `about` can occur in one item only and
/// would then weigh like a name; these words never tell what a text is about.
pub const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "but", "by", "did", "do",
    "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in", "is",
    "it", "its", "me", "my", "of", "on", "or", "our", "she", "so", "that", "the", "their", "them",
    "there", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who",
    "why", "will", "with", "you", "your",
];

/// The distinct keywords of a query, in order of first appearance: runs of
/// alphanumeric characters, lowercased, without [`STOP_WORDS`] and single
/// letters (single digits stay), at most [`MAX_QUERY_TOKENS`].
pub fn query_tokens(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut tokens = Vec::new();
    for token in words(text) {
        let single_letter = token.chars().count() == 1 && !token.chars().all(char::is_numeric);
        if single_letter || STOP_WORDS.contains(&token.as_str()) {
            continue;
        }
        if token.len() <= MAX_TOKEN_BYTES && seen.insert(token.clone()) {
            tokens.push(token);
            if tokens.len() == MAX_QUERY_TOKENS {
                break;
            }
        }
    }
    tokens
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// `token` as an FTS5 string literal: double-quoted, inner quotes doubled, so
/// that `AND`, `*`, `:`, `^`, `(`, `-` and the like are matched as text, never
/// read as query syntax.
pub fn fts5_string(token: &str) -> String {
    format!("\"{}\"", token.replace('"', "\"\""))
}

/// BM25's inverse document frequency of a token found in `df` of `n` items
/// (`df` is clamped to `n`); always positive.
pub fn idf(df: u64, n: u64) -> f32 {
    let n = n.max(1) as f64;
    let df = (df as f64).min(n);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32
}

/// The weight of a query token found in `df` of `n` items: `idf(df, n)²`.
pub fn weight(df: u64, n: u64) -> f32 {
    let idf = idf(df, n);
    idf * idf
}

/// The fused score of a candidate with cosine similarity `cosine` and
/// keyword coverage `keyword` (see the module docs).
pub fn fuse(cosine: f32, keyword: f32) -> f32 {
    let c = cosine.clamp(0.0, 1.0);
    let k = keyword.clamp(0.0, 1.0);
    c + (1.0 - c) * KEYWORD_WEIGHT * k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lowercased_words_and_syntax_is_dropped() {
        assert_eq!(
            query_tokens(r#"What's "Zorblax"'s ID: A-113? (NEAR* AND) café café 7"#),
            ["zorblax", "id", "113", "near", "café", "7"]
        );
        assert!(query_tokens("what is the").is_empty());
        assert!(query_tokens(" ?!*:^()\"- ").is_empty());
        assert_eq!(query_tokens(&"word ".repeat(100)), ["word"]);
        let many: String = (0..40).map(|i| format!("t{i} ")).collect();
        assert_eq!(query_tokens(&many).len(), MAX_QUERY_TOKENS);
        assert!(query_tokens(&"x".repeat(65)).is_empty());
        assert_eq!(fts5_string(r#"a"b"#), r#""a""b""#);
    }

    #[test]
    fn rare_tokens_weigh_more_and_idf_stays_positive() {
        assert!(idf(1, 10_000) > 8.0);
        assert!(idf(9_000, 10_000) < 0.2);
        assert!(idf(10_000, 10_000) > 0.0);
        assert!(idf(50, 10) > 0.0, "df is clamped to n");
        assert!(idf(0, 0).is_finite());
        assert!(weight(1, 18) > 5.0 * weight(8, 18));
    }

    #[test]
    fn fusion_keeps_cosine_without_keywords_and_stays_in_unit_range() {
        assert_eq!(fuse(0.42, 0.0), 0.42);
        assert!((fuse(0.3, 1.0) - (0.3 + 0.7 * KEYWORD_WEIGHT)).abs() < 1e-6);
        assert_eq!(fuse(-0.2, 0.0), 0.0);
        assert!(fuse(1.0, 1.0) <= 1.0);
        // A modest cosine holding the rare word beats a better cosine without it.
        assert!(fuse(0.3, 0.9) > fuse(0.55, 0.1));
        for c in [0.0, 0.2, 0.5, 0.9] {
            assert!(fuse(c, 0.5) >= c && fuse(c, 0.5) <= 1.0);
        }
    }
}

//! Long-term memory as an agent exposes it: facts kept across sessions,
//! found again by meaning and by keywords.

use serde::{Deserialize, Serialize};

/// One remembered fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Its id (stable across updates).
    pub id: String,
    /// The fact, in a sentence or a few.
    pub text: String,
    /// A free-form category (`preference`, `fact`, `person`, `task`, …).
    pub category: String,
    /// 0.0 to 1.0; how much it matters.
    pub importance: f32,
    /// Who stored it: `agent` (the model, through a tool) or `user` (an API
    /// or the web UI).
    pub source: String,
    /// The session it was stored from, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Creation time (Unix ms).
    pub created_at_ms: i64,
    /// Last update (Unix ms); a near-duplicate store updates instead of adding.
    pub updated_at_ms: i64,
    /// Relevance to the query, for search results (see the agent's docs for
    /// how it is scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// A fact to remember.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewMemory {
    /// The fact.
    pub text: String,
    /// Category; `fact` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Importance from 0.0 to 1.0; 0.5 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<f32>,
    /// The session it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl NewMemory {
    /// The longest memory text, in characters.
    pub const MAX_TEXT_CHARS: usize = 4000;
    /// The longest category, in characters.
    pub const MAX_CATEGORY_CHARS: usize = 40;

    /// A fact with default category and importance.
    pub fn text(text: impl Into<String>) -> Self {
        NewMemory {
            text: text.into(),
            ..Default::default()
        }
    }

    /// The one check every way in (the memory tool, the agent's and the
    /// gateway's APIs) applies: the text trimmed, 1 to
    /// [`MAX_TEXT_CHARS`](Self::MAX_TEXT_CHARS) characters; the category one
    /// lowercase word of letters, digits, `_` or `-` (`fact` when absent);
    /// importance from 0 to 1 (0.5 when absent).
    pub fn validate(&self) -> Result<ValidMemory, InvalidMemory> {
        let text = self.text.trim();
        if text.is_empty() {
            return Err(InvalidMemory::EmptyText);
        }
        if text.chars().count() > Self::MAX_TEXT_CHARS {
            return Err(InvalidMemory::TextTooLong);
        }
        let category = self
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("fact")
            .to_lowercase();
        if category.chars().count() > Self::MAX_CATEGORY_CHARS
            || !category
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err(InvalidMemory::Category);
        }
        let importance = self.importance.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&importance) {
            return Err(InvalidMemory::Importance);
        }
        Ok(ValidMemory {
            text: text.to_owned(),
            category,
            importance,
        })
    }
}

/// A [`NewMemory`] that passed [`NewMemory::validate`], normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMemory {
    /// The text, trimmed.
    pub text: String,
    /// The category, lowercase.
    pub category: String,
    /// The importance, from 0 to 1.
    pub importance: f32,
}

/// Why a [`NewMemory`] is refused; each has a stable [`code`](Self::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMemory {
    /// Nothing but whitespace.
    #[error("the memory's text is empty")]
    EmptyText,
    /// Longer than [`NewMemory::MAX_TEXT_CHARS`].
    #[error(
        "a memory is at most {} characters; store the essential fact",
        NewMemory::MAX_TEXT_CHARS
    )]
    TextTooLong,
    /// Not one word, or too long.
    #[error(
        "a category is one word of at most {} letters, digits, `_` or `-`",
        NewMemory::MAX_CATEGORY_CHARS
    )]
    Category,
    /// Not a number from 0 to 1.
    #[error("importance is a number from 0 to 1")]
    Importance,
}

impl InvalidMemory {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            InvalidMemory::EmptyText => "empty_text",
            InvalidMemory::TextTooLong => "text_too_long",
            InvalidMemory::Category => "invalid_category",
            InvalidMemory::Importance => "invalid_importance",
        }
    }
}

impl From<InvalidMemory> for crate::Error {
    fn from(error: InvalidMemory) -> Self {
        crate::Error::InvalidInput(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(text: &str, category: Option<&str>, importance: Option<f32>) -> NewMemory {
        NewMemory {
            text: text.into(),
            category: category.map(str::to_owned),
            importance,
            session: None,
        }
    }

    #[test]
    fn one_rule_for_every_way_in() {
        let valid = memory("  Maria lives in Lisbon ", Some(" Person "), None)
            .validate()
            .unwrap();
        assert_eq!(
            valid,
            ValidMemory {
                text: "Maria lives in Lisbon".into(),
                category: "person".into(),
                importance: 0.5,
            }
        );
        assert_eq!(
            memory("x", None, Some(1.0)).validate().unwrap().category,
            "fact"
        );
        let refused = [
            (memory(" \n ", None, None), "empty_text"),
            (memory(&"a".repeat(4001), None, None), "text_too_long"),
            (memory("x", Some("two words"), None), "invalid_category"),
            (memory("x", Some("a\u{7}"), None), "invalid_category"),
            (memory("x", Some(&"c".repeat(41)), None), "invalid_category"),
            (memory("x", None, Some(1.5)), "invalid_importance"),
            (memory("x", None, Some(f32::NAN)), "invalid_importance"),
        ];
        for (new, code) in refused {
            assert_eq!(new.validate().unwrap_err().code(), code, "{new:?}");
        }
        assert!(
            memory(&"é".repeat(4000), Some("émotion_1-a"), Some(0.0))
                .validate()
                .is_ok()
        );
    }
}

/// What storing a memory did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMemory {
    /// The memory as stored now.
    pub memory: Memory,
    /// True when a near-identical memory existed and was updated instead of
    /// adding a new one.
    pub updated: bool,
}

/// A page of memories, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPage {
    /// The memories of this page.
    pub memories: Vec<Memory>,
    /// How many memories exist in all.
    pub total: u64,
}

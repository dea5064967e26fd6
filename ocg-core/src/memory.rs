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
    /// A fact with default category and importance.
    pub fn text(text: impl Into<String>) -> Self {
        NewMemory {
            text: text.into(),
            ..Default::default()
        }
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

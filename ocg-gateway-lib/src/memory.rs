//! `/api/memory`: the user's long-term memories, through the agent.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/memory?offset&limit` | a [`MemoryPage`], newest first |
//! | `GET /api/memory/search?q&limit` | `{"memories":[Memory…]}`, best first, each with its `score` |
//! | `POST /api/memory` `{"text","category"?,"importance"?}` | [`StoredMemory`]: 201 when added, 200 when a near-identical memory was updated |
//! | `GET /api/memory/{id}` | a [`Memory`] |
//! | `DELETE /api/memory/{id}` | 204 |
//!
//! Every call goes to the agent's `memory_*` methods; the gateway only
//! checks input, so bad requests never reach the agent. An agent that keeps
//! no memory answers `501 unsupported`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ocg_core::{Memory, MemoryPage, NewMemory, StoredMemory};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ApiError;
use crate::routes::{AppState, JsonBody};

/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Longest memory id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Page size of the list without `limit`, and its largest value.
pub const LIST_LIMIT: (u64, u64) = (50, 500);
/// Number of search results without `limit`, and its largest value.
pub const SEARCH_LIMIT: (u64, u64) = (10, 100);

/// The memory routes, merged into the token-protected part of the router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/memory", get(list).post(store))
        .route("/api/memory/search", get(search))
        .route("/api/memory/{id}", get(fetch).delete(forget))
}

fn bad(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// An agent error, with a clearer word for an agent that keeps no memory.
fn agent_error(error: ocg_core::Error) -> ApiError {
    if let ocg_core::Error::Unsupported(_) = error {
        tracing::debug!("the agent keeps no memory");
        return ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            "this agent does not keep long-term memory",
        );
    }
    ApiError::from(error)
}

/// A whole number query parameter: `default` when absent or empty, else
/// within `range`, else `code`.
pub(crate) fn number(
    query: &HashMap<String, String>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    code: &str,
) -> Result<u64, ApiError> {
    match query.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                bad(
                    code,
                    format!(
                        "{name} must be a whole number from {} to {}, not {text:?}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

async fn list(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<MemoryPage>, ApiError> {
    let offset = number(&query, "offset", 0, 0..=u64::MAX, "invalid_offset")?;
    let limit = number(
        &query,
        "limit",
        LIST_LIMIT.0,
        1..=LIST_LIMIT.1,
        "invalid_limit",
    )?;
    let page = state
        .agent
        .memory_list(offset, limit)
        .await
        .map_err(agent_error)?;
    Ok(Json(page))
}

async fn search(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let text = query.get("q").map_or("", |q| q.trim());
    if text.is_empty() {
        return Err(bad("empty_query", "q, the text to search for, is required"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(bad(
            "query_too_long",
            format!("q is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let limit = number(
        &query,
        "limit",
        SEARCH_LIMIT.0,
        1..=SEARCH_LIMIT.1,
        "invalid_limit",
    )?;
    let found = state
        .agent
        .memory_search(text, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(agent_error)?;
    Ok(Json(json!({ "memories": found })))
}

/// The body of `POST /api/memory`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemory {
    text: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    importance: Option<f32>,
}

impl AddMemory {
    /// Checked and trimmed, as the agent's [`NewMemory`].
    fn validate(self) -> Result<NewMemory, ApiError> {
        let memory = NewMemory {
            text: self.text,
            category: self.category,
            importance: self.importance,
            session: None,
        };
        let valid = memory
            .validate()
            .map_err(|e| bad(e.code(), e.to_string()))?;
        Ok(NewMemory {
            text: valid.text,
            category: Some(valid.category),
            importance: Some(valid.importance),
            session: None,
        })
    }
}

async fn store(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AddMemory>,
) -> Result<(StatusCode, Json<StoredMemory>), ApiError> {
    let memory = body.validate()?;
    let stored = state
        .agent
        .memory_store(memory)
        .await
        .map_err(agent_error)?;
    tracing::info!(id = %stored.memory.id, updated = stored.updated, "memory stored from the API");
    let status = if stored.updated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stored)))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.trim().is_empty() || id.len() > MAX_ID_BYTES {
        return Err(bad(
            "invalid_id",
            format!("a memory id is 1 to {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Memory>, ApiError> {
    check_id(&id)?;
    let memory = state.agent.memory_get(&id).await.map_err(agent_error)?;
    Ok(Json(memory))
}

async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    state.agent.memory_delete(&id).await.map_err(agent_error)?;
    tracing::info!(%id, "memory deleted from the API");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests;

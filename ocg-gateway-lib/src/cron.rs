//! `/api/cron`: scheduled jobs, through the agent.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/cron` | `[Job…]`, soonest next run first |
//! | `POST /api/cron` [`NewJob`] | 201 and the [`Job`] |
//! | `GET /api/cron/{id}` | the [`Job`] |
//! | `PATCH /api/cron/{id}` [`JobPatch`] | the changed [`Job`] (`{"enabled":false}` pauses) |
//! | `DELETE /api/cron/{id}` | 204 |
//! | `GET /api/cron/{id}/runs?limit` | `[JobRun…]`, newest first |
//! | `POST /api/cron/{id}/run` | 202 `{"occurrence_ms"}`: queued for the scheduler |
//!
//! The agent validates (the same checks as its `schedule` tool and `ocg
//! cron`), so the errors are the same everywhere: `400 invalid_input` with
//! the reason, `404 not_found`, `501 unsupported` for an agent without
//! scheduling.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use ocg_core::schedule::{Job, JobPatch, JobRun, NewJob};

use crate::ApiError;
use crate::routes::{AppState, JsonBody};

/// The cron routes, merged into the token-protected part of the router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/cron", get(list).post(create))
        .route("/api/cron/{id}", get(fetch).patch(update).delete(remove))
        .route("/api/cron/{id}/runs", get(runs))
        .route("/api/cron/{id}/run", post(run_now))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(state.agent.job_list().await?))
}

async fn create(
    State(state): State<AppState>,
    JsonBody(job): JsonBody<NewJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.agent.job_create(job).await?),
    ))
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.agent.job_get(&id).await?))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<JobPatch>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.agent.job_update(&id, patch).await?))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.agent.job_delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<JobRun>>, ApiError> {
    let limit = match query.get("limit").map(|v| v.trim()) {
        None | Some("") => 20,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    "limit is a whole number from 1 to 1000",
                )
            })?,
    };
    Ok(Json(state.agent.job_runs(&id, limit).await?))
}

async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let at = state.agent.job_run_now(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "occurrence_ms": at })),
    ))
}

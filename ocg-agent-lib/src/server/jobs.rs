//! The scheduling routes of the agent's RPC server (see [`super::router`]).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ocg_core::Agent;
use ocg_core::schedule::{Delivery, DeliveryOutcome, Job, JobPatch, JobRun, NewJob};
use serde::Deserialize;

use super::{ApiError, ApiJson};
use crate::AgentRuntime;

/// The routes under `/v1/jobs` and `/v1/deliveries`.
pub(super) fn routes() -> axum::Router<AgentRuntime> {
    axum::Router::new()
        .route("/v1/jobs", get(list).post(create))
        .route("/v1/jobs/{id}", get(get_job).patch(update).delete(delete))
        .route("/v1/jobs/{id}/runs", get(runs))
        .route("/v1/jobs/{id}/run", post(run_now))
        .route("/v1/deliveries/pending", post(pending))
        .route("/v1/deliveries/report", post(report))
}

async fn list(State(runtime): State<AgentRuntime>) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(runtime.job_list().await?))
}

async fn create(
    State(runtime): State<AgentRuntime>,
    ApiJson(job): ApiJson<NewJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    Ok((StatusCode::CREATED, Json(runtime.job_create(job).await?)))
}

async fn get_job(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(runtime.job_get(&id).await?))
}

async fn update(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<JobPatch>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(runtime.job_update(&id, patch).await?))
}

async fn delete(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    runtime.job_delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    #[serde(default = "default_runs")]
    limit: u64,
}

fn default_runs() -> u64 {
    20
}

async fn runs(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<JobRun>>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    Ok(Json(
        runtime.job_runs(&id, query.limit.clamp(1, 1000)).await?,
    ))
}

async fn run_now(
    State(runtime): State<AgentRuntime>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let at = runtime.job_run_now(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "occurrence_ms": at })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingQuery {
    channels: Vec<String>,
    #[serde(default)]
    wait_ms: u64,
}

async fn pending(
    State(runtime): State<AgentRuntime>,
    ApiJson(query): ApiJson<PendingQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    Ok(Json(
        runtime
            .deliveries_pending(&query.channels, query.wait_ms)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
struct Report {
    key: String,
    #[serde(flatten)]
    outcome: DeliveryOutcome,
}

async fn report(
    State(runtime): State<AgentRuntime>,
    ApiJson(report): ApiJson<Report>,
) -> Result<StatusCode, ApiError> {
    runtime.delivery_report(&report.key, report.outcome).await?;
    Ok(StatusCode::NO_CONTENT)
}

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
    let limit = crate::memory::number(&query, "limit", 20, 1..=1000, "invalid_limit")?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use ocg_core::testing::ScriptedAgent;
    use tower::ServiceExt;

    use crate::{GatewayState, router};

    async fn call(
        token: Option<&str>,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let app = router(GatewayState::new(
            Arc::new(ScriptedAgent::new()),
            "cron-token".into(),
        ));
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .oneshot(request.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_cron_routes_need_the_token_check_bodies_and_name_an_agent_without_scheduling() {
        let (status, _) = call(None, "GET", "/api/cron", "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(Some("cron-token"), "GET", "/api/cron", "").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
        assert!(body.contains("unsupported"), "{body}");
        let (status, body) = call(Some("cron-token"), "POST", "/api/cron", "{\"message\":1}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("invalid_json"), "{body}");
        let (status, body) =
            call(Some("cron-token"), "GET", "/api/cron/abc/runs?limit=0", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("invalid_limit"), "{body}");
        let (status, _) = call(Some("cron-token"), "POST", "/api/cron/abc/run", "").await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    }
}

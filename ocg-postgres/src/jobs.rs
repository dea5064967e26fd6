//! [`PgJobStore`]: the [`JobStore`] contract in PostgreSQL, so every agent
//! of the database runs the same scheduled jobs, each occurrence once.
//!
//! The tables mirror the agent's SQLite ones (`ocg_jobs`, `ocg_job_runs`,
//! `ocg_job_deliveries`, `ocg_job_heartbeats`). Where SQLite serializes
//! whole transactions, PostgreSQL locks rows:
//!
//! - a claim takes the due jobs and requested runs `FOR UPDATE SKIP
//!   LOCKED`, so two schedulers claiming at once split the work instead of
//!   waiting on each other, and moves each job's `next_run_ms` only if it
//!   still holds the occurrence it read; the run's `UNIQUE(job_id,
//!   occurrence_ms, attempt)` stays the last word, as in SQLite;
//!   each run starts in one statement (the job moved on and the run
//!   inserted, its id drawn beforehand so its session is known), and a
//!   claim's runs are pipelined on its connection: a claim of 64 runs
//!   costs about eight round trips, not four per run;
//! - a retry of an interrupted run is taken by an `UPDATE … WHERE NOT
//!   retried`, which a second scheduler re-checks after the first commits;
//! - an edit, a finish and a delete lock the job's row before its runs, so
//!   they queue instead of deadlocking.
//!
//! A scheduler learns of another agent's new job at its next pass (at most
//! `SchedulerConfig::max_sleep` later), and a gateway of another agent's
//! delivery at its next poll.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use ocg_core::schedule::{
    Claim, ClaimedRun, Delivery, DeliveryOutcome, DeliveryTarget, Due, Finished, Job, JobEdit,
    JobRun, JobStore, MissedPolicy, NewDelivery, NextOccurrence, RunOutcome, RunStatus, StoredJob,
    WebhookDelivery, after_run, run_session,
};
use tokio_postgres::Row;

use crate::PgError;

/// Scheduled jobs, their runs and deliveries in PostgreSQL.
#[derive(Clone)]
pub struct PgJobStore {
    pool: Pool,
}

impl std::fmt::Debug for PgJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJobStore").finish_non_exhaustive()
    }
}

/// A database error as the contract's.
trait Db<T> {
    fn db(self) -> ocg_core::Result<T>;
}

impl<T> Db<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> ocg_core::Result<T> {
        self.map_err(|e| PgError::from(e).into())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> ocg_core::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        ocg_core::Error::from(PgError::Invalid(format!("a stored job is unreadable: {e}")))
    })
}

fn not_found(id: &str) -> ocg_core::Error {
    ocg_core::Error::NotFound(format!("job {id}"))
}

fn small(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const JOB_COLUMNS: &str = "id, name, schedule, anchor_ms, message, session, deliver, origin, \
    enabled, missed, disable_after, failures, next_run_ms, last_status, last_run_ms, \
    created_at_ms, updated_at_ms";

fn read_job(row: &Row) -> ocg_core::Result<StoredJob> {
    let deliver: Option<String> = row.get("deliver");
    let last_status: Option<String> = row.get("last_status");
    let job = Job {
        id: row.get("id"),
        name: row.get("name"),
        schedule: from_json(row.get("schedule"))?,
        message: row.get("message"),
        session: from_json(row.get("session"))?,
        deliver: deliver.as_deref().map(from_json).transpose()?,
        origin: row.get("origin"),
        enabled: row.get("enabled"),
        missed: MissedPolicy::parse(row.get("missed")),
        disable_after_failures: small(row.get("disable_after")),
        consecutive_failures: small(row.get("failures")),
        next_run_ms: row.get("next_run_ms"),
        last_status: last_status.as_deref().map(RunStatus::parse),
        last_run_ms: row.get("last_run_ms"),
        created_at_ms: row.get("created_at_ms"),
        updated_at_ms: row.get("updated_at_ms"),
    };
    Ok(StoredJob {
        job,
        anchor_ms: row.get("anchor_ms"),
    })
}

fn read_run(row: &Row) -> JobRun {
    let delivery: Option<String> = row.get("delivery_state");
    let delivery_error: Option<String> = row.get("delivery_error");
    JobRun {
        id: row.get("id"),
        job_id: row.get("job_id"),
        occurrence_ms: row.get("occurrence_ms"),
        attempt: small(row.get("attempt")),
        trigger: row.get("trigger"),
        status: RunStatus::parse(row.get("status")),
        session_key: row.get("session_key"),
        started_at_ms: row.get("started_at_ms"),
        ended_at_ms: row.get("ended_at_ms"),
        reply: row.get("reply"),
        error: row.get("error"),
        prompt_tokens: small(row.get("prompt_tokens")),
        completion_tokens: small(row.get("completion_tokens")),
        delivery: delivery.map(|state| match delivery_error {
            Some(error) if state == "failed" => format!("failed: {error}"),
            _ => state,
        }),
    }
}

/// Job `id`, locked `lock` (`""`, `FOR UPDATE`, …) when asked.
async fn load(
    client: &impl GenericClient,
    id: &str,
    lock: &str,
) -> ocg_core::Result<Option<StoredJob>> {
    let row = client
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM ocg_jobs WHERE id = $1 {lock}"),
            &[&id],
        )
        .await
        .db()?;
    row.as_ref().map(read_job).transpose()
}

async fn queue_delivery(
    client: &impl GenericClient,
    delivery: &NewDelivery,
    now: i64,
) -> ocg_core::Result<bool> {
    let (channel, target) = match &delivery.target {
        DeliveryTarget::Chat { channel, target } => (channel.as_str(), to_json(target)),
        DeliveryTarget::Webhook { url } => ("webhook", url.clone()),
    };
    let inserted = client
        .execute(
            "INSERT INTO ocg_job_deliveries
                (key, job_id, run_id, channel, target, text, state, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)
             ON CONFLICT (key) DO NOTHING",
            &[
                &delivery.key,
                &delivery.job_id,
                &delivery.run_id,
                &channel,
                &target,
                &delivery.text,
                &now,
            ],
        )
        .await
        .db()?;
    Ok(inserted == 1)
}

/// Where a run starts: its job, occurrence, attempt, trigger and status.
struct NewRun {
    job: Job,
    occurrence: i64,
    attempt: i64,
    trigger: &'static str,
    status: RunStatus,
    /// For a scheduled occurrence, the job's next run after it: the run
    /// starts only if the job's next run still is `occurrence`, and moves
    /// it on.
    advance: Option<Option<i64>>,
}

/// Start `run` as run `id` (taken from the runs' sequence beforehand, so
/// its session is known): one statement that moves the job on (or, for a
/// scheduled occurrence, finds it moved already and starts nothing) and
/// inserts the run. `None` when it does not start.
async fn insert_run(
    client: &impl GenericClient,
    run: NewRun,
    claim: &Claim,
    id: i64,
) -> ocg_core::Result<Option<ClaimedRun>> {
    let NewRun {
        job,
        occurrence,
        attempt,
        trigger,
        status,
        advance,
    } = run;
    let now = claim.now_ms;
    let ended = (status != RunStatus::Running).then_some(now);
    let session_key = run_session(&job, id);
    let row = client
        .query_opt(
            "WITH job AS (
                 UPDATE ocg_jobs SET last_status = $5, last_run_ms = $8,
                     next_run_ms = CASE WHEN $11 THEN $12::bigint ELSE next_run_ms END
                 WHERE id = $2 AND (NOT $11 OR next_run_ms = $3)
                 RETURNING id)
             INSERT INTO ocg_job_runs (id, job_id, occurrence_ms, attempt, trigger, status,
                 owner, lease_until_ms, started_at_ms, ended_at_ms, session_key)
             OVERRIDING SYSTEM VALUE
             SELECT $1::bigint, job.id, $3::bigint, $4::bigint, $6::text, $5::text, $7::text,
                 $9::bigint, $8::bigint, $10::bigint, $13::text
             FROM job
             ON CONFLICT (job_id, occurrence_ms, attempt) DO NOTHING
             RETURNING id",
            &[
                &id,
                &job.id,
                &occurrence,
                &attempt,
                &status.as_str(),
                &trigger,
                &claim.owner,
                &now,
                &(now + claim.lease_ms),
                &ended,
                &advance.is_some(),
                &advance.flatten(),
                &session_key,
            ],
        )
        .await
        .db()?;
    if row.is_none() {
        if advance.is_none() {
            tracing::warn!(job = %job.id, occurrence, attempt, "occurrence already claimed");
        }
        return Ok(None);
    }
    if status == RunStatus::Skipped {
        tracing::info!(job = %job.id, occurrence, "occurrence missed during downtime; skipped");
    }
    Ok((status == RunStatus::Running).then(|| ClaimedRun {
        run_id: id,
        job,
        occurrence_ms: occurrence,
        session_key,
        trigger: trigger.to_owned(),
    }))
}

/// Start `runs`, pipelined on `tx`'s connection: one round trip for their
/// ids, about one for the runs.
async fn start_runs(
    tx: &deadpool_postgres::Transaction<'_>,
    claim: &Claim,
    runs: Vec<NewRun>,
) -> ocg_core::Result<Vec<ClaimedRun>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids = tx
        .query(
            "SELECT nextval(pg_get_serial_sequence('ocg_job_runs', 'id'))
             FROM generate_series(1, $1::bigint)",
            &[&i64::try_from(runs.len()).unwrap_or(i64::MAX)],
        )
        .await
        .db()?;
    let started = futures_util::future::try_join_all(
        runs.into_iter()
            .zip(ids)
            .map(|(run, id)| insert_run(tx, run, claim, id.get(0))),
    )
    .await?;
    Ok(started.into_iter().flatten().collect())
}

/// The jobs with `ids`, as they are now.
async fn load_all(
    client: &impl GenericClient,
    ids: &[String],
) -> ocg_core::Result<std::collections::HashMap<String, StoredJob>> {
    let rows = client
        .query(
            &format!("SELECT {JOB_COLUMNS} FROM ocg_jobs WHERE id = ANY($1)"),
            &[&ids],
        )
        .await
        .db()?;
    rows.iter()
        .map(|row| read_job(row).map(|stored| (stored.job.id.clone(), stored)))
        .collect()
}

/// Runs of `attempt` by `trigger` for `(job id, occurrence)` rows (retries,
/// runs asked for); a job deleted meanwhile gets none.
async fn runs_of(
    client: &impl GenericClient,
    rows: Vec<Row>,
    attempt: i64,
    trigger: &'static str,
) -> ocg_core::Result<Vec<NewRun>> {
    let ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let mut jobs = load_all(client, &ids).await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let stored = jobs.remove(row.get::<_, &str>(0))?;
            Some(NewRun {
                job: stored.job,
                occurrence: row.get(1),
                attempt,
                trigger,
                status: RunStatus::Running,
                advance: None,
            })
        })
        .collect())
}

impl PgJobStore {
    /// The jobs of the database behind `pool` (its schema brought up to
    /// date by [`migrate`](crate::migrate::migrate)).
    pub fn new(pool: Pool) -> Self {
        PgJobStore { pool }
    }

    async fn client(&self) -> ocg_core::Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await.map_err(PgError::from)?)
    }
}

/// The claim of [`JobStore::claim_due`], in `tx`.
async fn claim(
    tx: &deadpool_postgres::Transaction<'_>,
    claim: &Claim,
    next_of: &NextOccurrence,
) -> ocg_core::Result<Vec<ClaimedRun>> {
    let now = claim.now_ms;
    let limit = i64::try_from(claim.limit).unwrap_or(i64::MAX);

    // Runs whose scheduler stopped renewing them.
    let expired = tx
        .execute(
            "UPDATE ocg_job_runs SET status = 'interrupted', ended_at_ms = $1,
                 error = 'the scheduler running it stopped (its lease expired)'
             WHERE status = 'running' AND lease_until_ms < $1",
            &[&now],
        )
        .await
        .db()?;
    if expired > 0 {
        tracing::warn!(runs = expired, "runs interrupted by a stopped scheduler");
    }
    // One retry of each interrupted first attempt under `run_once`.
    let interrupted = tx
        .query(
            "UPDATE ocg_job_runs r SET retried = true
             FROM ocg_jobs j
             WHERE j.id = r.job_id AND r.status = 'interrupted' AND NOT r.retried
               AND r.attempt = 1 AND j.missed = 'run_once' AND j.enabled
             RETURNING r.job_id, r.occurrence_ms",
            &[],
        )
        .await
        .db()?;
    let mut runs = runs_of(tx, interrupted, 2, "retry").await?;
    // Runs asked for.
    let requested = tx
        .query(
            "WITH asked AS (
                 SELECT id, run_requested_ms FROM ocg_jobs
                 WHERE run_requested_ms IS NOT NULL AND run_requested_ms <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE ocg_jobs j SET run_requested_ms = NULL FROM asked
             WHERE j.id = asked.id
             RETURNING j.id, asked.run_requested_ms",
            &[&now, &limit],
        )
        .await
        .db()?;
    runs.extend(runs_of(tx, requested, 1, "manual").await?);
    // Occurrences due.
    let left = i64::try_from(claim.limit.saturating_sub(runs.len())).unwrap_or(0);
    let due = tx
        .query(
            &format!(
                "SELECT {JOB_COLUMNS} FROM ocg_jobs
                 WHERE enabled AND next_run_ms <= $1 ORDER BY next_run_ms LIMIT $2
                 FOR UPDATE SKIP LOCKED"
            ),
            &[&now, &left],
        )
        .await
        .db()?;
    for row in due {
        let decided = read_job(&row).map(|stored| {
            let due = claim.decide(&stored, next_of);
            (stored, due)
        });
        match decided {
            Ok((
                stored,
                Due::Claim {
                    occurrence_ms,
                    next_ms,
                    status,
                },
            )) => runs.push(NewRun {
                job: stored.job,
                occurrence: occurrence_ms,
                attempt: 1,
                trigger: "schedule",
                status,
                advance: Some(next_ms),
            }),
            Ok((_, Due::Disable(error))) | Err(error) => {
                let id: String = row.get("id");
                tracing::error!(job = %id, %error, "stored job unreadable; disabled");
                disable(tx, &id).await?;
            }
            Ok((_, Due::Nothing)) => {}
        }
    }
    start_runs(tx, claim, runs).await
}

async fn disable(client: &impl GenericClient, id: &str) -> ocg_core::Result<()> {
    client
        .execute(
            "UPDATE ocg_jobs SET enabled = false, next_run_ms = NULL WHERE id = $1",
            &[&id],
        )
        .await
        .db()?;
    Ok(())
}

#[async_trait]
impl JobStore for PgJobStore {
    async fn insert_job(&self, stored: &StoredJob, max_jobs: u64) -> ocg_core::Result<()> {
        let job = &stored.job;
        let client = self.client().await?;
        // One statement: the count and the insert see the same snapshot
        // (the limit is a guard against runaway creation, not a quota).
        let inserted = client
            .execute(
                "INSERT INTO ocg_jobs (id, name, schedule, anchor_ms, message, session, deliver,
                     origin, enabled, missed, disable_after, next_run_ms, created_at_ms,
                     updated_at_ms)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
                 WHERE (SELECT count(*) FROM ocg_jobs) < $15",
                &[
                    &job.id,
                    &job.name,
                    &to_json(&job.schedule),
                    &stored.anchor_ms,
                    &job.message,
                    &to_json(&job.session),
                    &job.deliver.as_ref().map(to_json),
                    &job.origin,
                    &job.enabled,
                    &job.missed.as_str(),
                    &i64::from(job.disable_after_failures),
                    &job.next_run_ms,
                    &job.created_at_ms,
                    &job.updated_at_ms,
                    &count(max_jobs),
                ],
            )
            .await
            .db()?;
        if inserted == 0 {
            return Err(ocg_core::Error::InvalidInput(format!(
                "there are {max_jobs} jobs already; delete some first"
            )));
        }
        Ok(())
    }

    async fn jobs(&self) -> ocg_core::Result<Vec<Job>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM ocg_jobs
                     ORDER BY next_run_ms IS NULL, next_run_ms, created_at_ms"
                ),
                &[],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| read_job(row).map(|stored| stored.job))
            .collect()
    }

    async fn count_jobs_from(&self, origin: Option<&str>) -> ocg_core::Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM ocg_jobs WHERE origin IS NOT DISTINCT FROM $1",
                &[&origin],
            )
            .await
            .db()?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn job(&self, id: &str) -> ocg_core::Result<StoredJob> {
        let client = self.client().await?;
        load(&client, id, "").await?.ok_or_else(|| not_found(id))
    }

    async fn edit_job(&self, id: &str, edit: JobEdit) -> ocg_core::Result<Job> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db()?;
        let stored = load(&tx, id, "FOR UPDATE")
            .await?
            .ok_or_else(|| not_found(id))?;
        let stored = edit(stored)?;
        let job = &stored.job;
        tx.execute(
            "UPDATE ocg_jobs SET name = $2, schedule = $3, anchor_ms = $4, message = $5,
                 enabled = $6, missed = $7, failures = $8, next_run_ms = $9, updated_at_ms = $10
             WHERE id = $1",
            &[
                &job.id,
                &job.name,
                &to_json(&job.schedule),
                &stored.anchor_ms,
                &job.message,
                &job.enabled,
                &job.missed.as_str(),
                &i64::from(job.consecutive_failures),
                &job.next_run_ms,
                &job.updated_at_ms,
            ],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(stored.job)
    }

    async fn delete_job(&self, id: &str) -> ocg_core::Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db()?;
        if load(&tx, id, "FOR UPDATE").await?.is_none() {
            return Err(not_found(id));
        }
        tx.execute(
            "DELETE FROM ocg_job_deliveries WHERE job_id = $1 AND state = 'pending'",
            &[&id],
        )
        .await
        .db()?;
        tx.execute("DELETE FROM ocg_jobs WHERE id = $1", &[&id])
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn runs(&self, id: &str, limit: u64) -> ocg_core::Result<Vec<JobRun>> {
        let client = self.client().await?;
        if load(&client, id, "").await?.is_none() {
            return Err(not_found(id));
        }
        let rows = client
            .query(
                "SELECT r.*, d.state AS delivery_state, d.error AS delivery_error
                 FROM ocg_job_runs r
                 LEFT JOIN ocg_job_deliveries d ON d.run_id = r.id
                 WHERE r.job_id = $1 ORDER BY r.id DESC LIMIT $2",
                &[&id, &count(limit)],
            )
            .await
            .db()?;
        Ok(rows.iter().map(read_run).collect())
    }

    async fn request_run(&self, id: &str, now_ms: i64) -> ocg_core::Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE ocg_jobs SET run_requested_ms = COALESCE(run_requested_ms, $2)
                 WHERE id = $1 RETURNING run_requested_ms",
                &[&id, &now_ms],
            )
            .await
            .db()?;
        row.map(|row| row.get(0)).ok_or_else(|| not_found(id))
    }

    async fn next_wake_ms(&self) -> ocg_core::Result<Option<i64>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT LEAST(
                     (SELECT min(next_run_ms) FROM ocg_jobs WHERE enabled),
                     (SELECT min(run_requested_ms) FROM ocg_jobs),
                     (SELECT min(lease_until_ms) FROM ocg_job_runs WHERE status = 'running'))",
                &[],
            )
            .await
            .db()?;
        Ok(row.get(0))
    }

    async fn claim_due(
        &self,
        request: &Claim,
        next: &NextOccurrence,
    ) -> ocg_core::Result<Vec<ClaimedRun>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db()?;
        let claimed = claim(&tx, request, next).await?;
        tx.commit().await.db()?;
        Ok(claimed)
    }

    async fn renew(&self, owner: &str, until_ms: i64) -> ocg_core::Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE ocg_job_runs SET lease_until_ms = $2
                 WHERE owner = $1 AND status = 'running'",
                &[&owner, &until_ms],
            )
            .await
            .db()
    }

    async fn interrupt_owned(&self, owner: &str, now_ms: i64) -> ocg_core::Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE ocg_job_runs SET status = 'interrupted', ended_at_ms = $2,
                     error = 'the agent stopped during the run'
                 WHERE owner = $1 AND status = 'running'",
                &[&owner, &now_ms],
            )
            .await
            .db()
    }

    async fn finish(
        &self,
        run_id: i64,
        owner: &str,
        outcome: &RunOutcome,
        now_ms: i64,
    ) -> ocg_core::Result<Finished> {
        let mut finished = Finished::default();
        let mut client = self.client().await?;
        let tx = client.transaction().await.db()?;
        let run = tx
            .query_opt(
                "SELECT job_id, occurrence_ms FROM ocg_job_runs WHERE id = $1",
                &[&run_id],
            )
            .await
            .db()?;
        let Some(run) = run else {
            return Ok(finished);
        };
        let (job_id, occurrence): (String, i64) = (run.get(0), run.get(1));
        // The job's row before the run's, as a delete takes them.
        let job = load(&tx, &job_id, "FOR NO KEY UPDATE").await?;
        let (reply, error, prompt, completion) = match outcome {
            RunOutcome::Ok {
                reply,
                prompt_tokens,
                completion_tokens,
            } => (
                Some(reply.as_str()),
                None,
                i64::from(*prompt_tokens),
                i64::from(*completion_tokens),
            ),
            RunOutcome::Failed(error) => (None, Some(error.as_str()), 0, 0),
        };
        let status = match outcome {
            RunOutcome::Ok { .. } => RunStatus::Ok,
            RunOutcome::Failed(_) => RunStatus::Error,
        };
        let changed = tx
            .execute(
                "UPDATE ocg_job_runs SET status = $3, ended_at_ms = $4, reply = $5, error = $6,
                     prompt_tokens = $7, completion_tokens = $8, lease_until_ms = NULL
                 WHERE id = $1 AND owner = $2 AND status = 'running'",
                &[
                    &run_id,
                    &owner,
                    &status.as_str(),
                    &now_ms,
                    &reply,
                    &error,
                    &prompt,
                    &completion,
                ],
            )
            .await
            .db()?;
        finished.recorded = changed == 1;
        if !finished.recorded {
            return Ok(finished);
        }
        if let Some(StoredJob { job, .. }) = job {
            let effects = after_run(&job, run_id, occurrence, outcome);
            tx.execute(
                "UPDATE ocg_jobs SET failures = $2, last_status = $3, updated_at_ms = $4,
                     enabled = enabled AND NOT $5,
                     next_run_ms = CASE WHEN $5 THEN NULL ELSE next_run_ms END
                 WHERE id = $1",
                &[
                    &job.id,
                    &i64::from(effects.failures),
                    &effects.status.as_str(),
                    &now_ms,
                    &effects.disable,
                ],
            )
            .await
            .db()?;
            if let Some(delivery) = &effects.delivery {
                finished.queued = queue_delivery(&tx, delivery, now_ms).await?;
            }
            finished.disabled = effects.disable;
        }
        tx.commit().await.db()?;
        Ok(finished)
    }

    async fn enqueue(&self, delivery: &NewDelivery, now_ms: i64) -> ocg_core::Result<bool> {
        let client = self.client().await?;
        queue_delivery(&client, delivery, now_ms).await
    }

    async fn pending(
        &self,
        channels: &[String],
        limit: usize,
        now_ms: i64,
    ) -> ocg_core::Result<Vec<Delivery>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, channel, target, text, created_at_ms FROM ocg_job_deliveries
                 WHERE state = 'pending' AND channel <> 'webhook' AND not_before_ms <= $3
                   AND (cardinality($1::text[]) = 0 OR channel = ANY($1))
                 ORDER BY created_at_ms LIMIT $2",
                &[
                    &channels,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                    &now_ms,
                ],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                Ok(Delivery {
                    key: row.get(0),
                    channel: row.get(1),
                    target: from_json(row.get(2))?,
                    text: row.get(3),
                    created_at_ms: row.get(4),
                })
            })
            .collect()
    }

    async fn next_webhook_retry_ms(&self) -> ocg_core::Result<Option<i64>> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT min(not_before_ms) FROM ocg_job_deliveries
                 WHERE state = 'pending' AND channel = 'webhook'",
                &[],
            )
            .await
            .db()?;
        Ok(row.get(0))
    }

    async fn report(
        &self,
        key: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> ocg_core::Result<()> {
        let (state, error) = match outcome {
            DeliveryOutcome::Sent => ("sent", None),
            DeliveryOutcome::Failed { error } => ("failed", Some(error.as_str())),
        };
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE ocg_job_deliveries SET state = $2, error = $3, updated_at_ms = $4,
                     attempts = attempts + 1
                 WHERE key = $1",
                &[&key, &state, &error, &now_ms],
            )
            .await
            .db()?;
        if changed == 0 {
            return Err(ocg_core::Error::InvalidInput(format!(
                "no delivery {key:?}"
            )));
        }
        Ok(())
    }

    async fn take_webhooks(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> ocg_core::Result<Vec<WebhookDelivery>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH due AS (
                     SELECT key FROM ocg_job_deliveries
                     WHERE state = 'pending' AND channel = 'webhook' AND not_before_ms <= $1
                     ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE ocg_job_deliveries d SET state = 'sending', updated_at_ms = $1,
                     attempts = attempts + 1
                 FROM due WHERE d.key = due.key
                 RETURNING d.key, d.target, d.text, d.job_id, d.created_at_ms",
                &[&now_ms, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .db()?;
        let mut taken: Vec<(i64, WebhookDelivery)> = rows
            .iter()
            .map(|row| {
                let delivery = WebhookDelivery {
                    key: row.get(0),
                    url: row.get(1),
                    text: row.get(2),
                    job_id: row.get(3),
                };
                (row.get(4), delivery)
            })
            .collect();
        taken.sort_by_key(|(created, _)| *created);
        Ok(taken.into_iter().map(|(_, delivery)| delivery).collect())
    }

    async fn webhook_done(
        &self,
        key: &str,
        result: Result<(), String>,
        retry_at: Option<i64>,
        max_attempts: u32,
        now_ms: i64,
    ) -> ocg_core::Result<()> {
        let client = self.client().await?;
        match (result, retry_at) {
            (Ok(()), _) => client
                .execute(
                    "UPDATE ocg_job_deliveries SET state = 'sent', error = NULL,
                         updated_at_ms = $2
                     WHERE key = $1",
                    &[&key, &now_ms],
                )
                .await
                .db()?,
            (Err(error), Some(at)) => client
                .execute(
                    "UPDATE ocg_job_deliveries SET error = $2, not_before_ms = $3,
                         updated_at_ms = $4,
                         state = CASE WHEN attempts >= $5 THEN 'failed' ELSE 'pending' END
                     WHERE key = $1",
                    &[&key, &error, &at, &now_ms, &i64::from(max_attempts)],
                )
                .await
                .db()?,
            (Err(error), None) => client
                .execute(
                    "UPDATE ocg_job_deliveries SET state = 'failed', error = $2,
                         updated_at_ms = $3
                     WHERE key = $1",
                    &[&key, &error, &now_ms],
                )
                .await
                .db()?,
        };
        Ok(())
    }

    async fn abandon_stale_sends(&self, older_than_ms: i64, now_ms: i64) -> ocg_core::Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE ocg_job_deliveries SET state = 'failed', updated_at_ms = $1,
                     error = 'the agent stopped while sending; not repeated (it may have arrived)'
                 WHERE state = 'sending' AND updated_at_ms < $2",
                &[&now_ms, &(now_ms - older_than_ms)],
            )
            .await
            .db()
    }

    async fn claim_heartbeat(
        &self,
        at_ms: i64,
        owner: &str,
        now_ms: i64,
    ) -> ocg_core::Result<bool> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO ocg_job_heartbeats (occurrence_ms, owner, claimed_at_ms)
                 VALUES ($1, $2, $3) ON CONFLICT (occurrence_ms) DO NOTHING",
                &[&at_ms, &owner, &now_ms],
            )
            .await
            .db()?;
        Ok(inserted == 1)
    }
}

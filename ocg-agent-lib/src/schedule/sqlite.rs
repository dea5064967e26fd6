//! [`SqliteJobStore`]: the [`JobStore`] contract in the agent's SQLite
//! database.
//!
//! Every change that decides what runs is one `BEGIN IMMEDIATE`
//! transaction, which holds SQLite's write lock from its first statement:
//! two schedulers over one database (two agents, or one restarted while the
//! old one still exits) take turns, and the second sees what the first
//! claimed. An occurrence is claimed by moving the job's `next_run_ms` past
//! it and inserting its run in the same transaction; the run's
//! `UNIQUE(job_id, occurrence_ms, attempt)` makes a second claim of it
//! impossible even by a scheduler with another idea of the time.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ocg_core::schedule::{
    Claim, ClaimedRun, Delivery, DeliveryOutcome, DeliveryTarget, Due, Finished, Job, JobEdit,
    JobRun, JobStore, MissedPolicy, NewDelivery, NextOccurrence, RunOutcome, RunStatus, StoredJob,
    WebhookDelivery, after_run, run_session,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::AgentError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schedule_jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    schedule TEXT NOT NULL,
    anchor_ms INTEGER NOT NULL,
    message TEXT NOT NULL,
    session TEXT NOT NULL,
    deliver TEXT,
    origin TEXT,
    enabled INTEGER NOT NULL,
    missed TEXT NOT NULL,
    disable_after INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    next_run_ms INTEGER,
    run_requested_ms INTEGER,
    last_status TEXT,
    last_run_ms INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_jobs_due ON schedule_jobs(next_run_ms) WHERE enabled = 1;
CREATE INDEX IF NOT EXISTS schedule_jobs_requested ON schedule_jobs(run_requested_ms)
    WHERE run_requested_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS schedule_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES schedule_jobs(id) ON DELETE CASCADE,
    occurrence_ms INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    session_key TEXT,
    owner TEXT,
    lease_until INTEGER,
    retried INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    reply TEXT,
    error TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    UNIQUE(job_id, occurrence_ms, attempt)
);
CREATE INDEX IF NOT EXISTS schedule_runs_open ON schedule_runs(status)
    WHERE status IN ('running', 'interrupted');
CREATE INDEX IF NOT EXISTS schedule_runs_by_job ON schedule_runs(job_id, id);
CREATE TABLE IF NOT EXISTS schedule_deliveries (
    key TEXT PRIMARY KEY,
    job_id TEXT,
    run_id INTEGER,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_deliveries_pending ON schedule_deliveries(channel, created_at)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS schedule_deliveries_by_run ON schedule_deliveries(run_id);
CREATE TABLE IF NOT EXISTS schedule_heartbeats (
    occurrence_ms INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
);
";

/// The scheduling tables of the agent's SQLite database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteJobStore {
    conn: Arc<Mutex<Connection>>,
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const JOB_COLUMNS: &str = "id, name, schedule, anchor_ms, message, session, deliver, origin, \
    enabled, missed, disable_after, failures, next_run_ms, last_status, last_run_ms, created_at, \
    updated_at";

fn read_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredJob> {
    let deliver: Option<String> = row.get("deliver")?;
    let last_status: Option<String> = row.get("last_status")?;
    let job = Job {
        id: row.get("id")?,
        name: row.get("name")?,
        schedule: from_json(&row.get::<_, String>("schedule")?)?,
        message: row.get("message")?,
        session: from_json(&row.get::<_, String>("session")?)?,
        deliver: deliver.as_deref().map(from_json).transpose()?,
        origin: row.get("origin")?,
        enabled: row.get::<_, i64>("enabled")? != 0,
        missed: MissedPolicy::parse(&row.get::<_, String>("missed")?),
        disable_after_failures: row.get("disable_after")?,
        consecutive_failures: row.get("failures")?,
        next_run_ms: row.get("next_run_ms")?,
        last_status: last_status.as_deref().map(RunStatus::parse),
        last_run_ms: row.get("last_run_ms")?,
        created_at_ms: row.get("created_at")?,
        updated_at_ms: row.get("updated_at")?,
    };
    Ok(StoredJob {
        job,
        anchor_ms: row.get("anchor_ms")?,
    })
}

fn read_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRun> {
    let delivery: Option<String> = row.get("delivery_state")?;
    let delivery_error: Option<String> = row.get("delivery_error")?;
    Ok(JobRun {
        id: row.get("id")?,
        job_id: row.get("job_id")?,
        occurrence_ms: row.get("occurrence_ms")?,
        attempt: row.get("attempt")?,
        trigger: row.get("trigger")?,
        status: RunStatus::parse(&row.get::<_, String>("status")?),
        session_key: row.get("session_key")?,
        started_at_ms: row.get("started_at")?,
        ended_at_ms: row.get("ended_at")?,
        reply: row.get("reply")?,
        error: row.get("error")?,
        prompt_tokens: row.get("prompt_tokens")?,
        completion_tokens: row.get("completion_tokens")?,
        delivery: delivery.map(|state| match delivery_error {
            Some(error) if state == "failed" => format!("failed: {error}"),
            _ => state,
        }),
    })
}

fn queue_delivery(
    tx: &rusqlite::Transaction<'_>,
    delivery: &NewDelivery,
    now: i64,
) -> rusqlite::Result<bool> {
    let (channel, target_json) = match &delivery.target {
        DeliveryTarget::Chat { channel, target } => (channel.as_str(), to_json(target)),
        DeliveryTarget::Webhook { url } => ("webhook", url.clone()),
    };
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO schedule_deliveries
            (key, job_id, run_id, channel, target, text, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        params![
            delivery.key,
            delivery.job_id,
            delivery.run_id,
            channel,
            target_json,
            delivery.text,
            now
        ],
    )?;
    Ok(inserted == 1)
}

impl SqliteJobStore {
    /// Open the scheduling tables in the database at `path` (the agent's
    /// session database; they live beside the sessions).
    pub fn open(path: &Path) -> Result<Self, AgentError> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database (tests, examples).
    pub fn in_memory() -> Result<Self, AgentError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, AgentError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteJobStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `work` in a write transaction that takes SQLite's write lock
    /// first (`BEGIN IMMEDIATE`), committed when `work` succeeds.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, AgentError> + Send + 'static,
    ) -> ocg_core::Result<T> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let done = work(&tx)?;
            tx.commit()?;
            Ok(done)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, AgentError> + Send + 'static,
    ) -> ocg_core::Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("schedule store task failed: {e}")))?
        .map_err(Into::into)
    }
}

fn load(conn: &Connection, id: &str) -> Result<StoredJob, AgentError> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM schedule_jobs WHERE id = ?1"),
        [id],
        read_job,
    )
    .optional()?
    .ok_or_else(|| AgentError::JobNotFound(id.to_owned()))
}

/// Where a run starts: its job, occurrence, attempt, trigger and status.
struct NewRun<'a> {
    job: &'a Job,
    occurrence: i64,
    attempt: u32,
    trigger: &'a str,
    status: RunStatus,
}

fn insert_run(
    tx: &rusqlite::Transaction<'_>,
    run: NewRun<'_>,
    claim: &Claim,
) -> Result<Option<ClaimedRun>, AgentError> {
    let NewRun {
        job,
        occurrence,
        attempt,
        trigger,
        status,
    } = run;
    let now = claim.now_ms;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO schedule_runs
            (job_id, occurrence_ms, attempt, trigger, status, owner, lease_until, started_at,
             ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            job.id,
            occurrence,
            attempt,
            trigger,
            status.as_str(),
            claim.owner,
            now + claim.lease_ms,
            now,
            (status != RunStatus::Running).then_some(now),
        ],
    )?;
    if inserted == 0 {
        tracing::warn!(job = %job.id, occurrence, attempt, "occurrence already claimed");
        return Ok(None);
    }
    if status == RunStatus::Skipped {
        tracing::info!(job = %job.id, occurrence, "occurrence missed during downtime; skipped");
    }
    let run_id = tx.last_insert_rowid();
    let session_key = run_session(job, run_id);
    tx.execute(
        "UPDATE schedule_runs SET session_key = ?2 WHERE id = ?1",
        params![run_id, session_key],
    )?;
    tx.execute(
        "UPDATE schedule_jobs SET last_status = ?2, last_run_ms = ?3 WHERE id = ?1",
        params![job.id, status.as_str(), now],
    )?;
    Ok((status == RunStatus::Running).then(|| ClaimedRun {
        run_id,
        job: job.clone(),
        occurrence_ms: occurrence,
        session_key,
        trigger: trigger.to_owned(),
    }))
}

/// Start a running run of each `(job, occurrence)` of `starts` (retries,
/// runs asked for); a job deleted meanwhile starts none.
fn start_runs(
    tx: &rusqlite::Transaction<'_>,
    claim: &Claim,
    starts: Vec<(String, i64)>,
    attempt: u32,
    trigger: &str,
) -> Result<Vec<ClaimedRun>, AgentError> {
    let mut started = Vec::new();
    for (job_id, occurrence) in starts {
        let job = match load(tx, &job_id) {
            Ok(stored) => stored.job,
            Err(AgentError::JobNotFound(_)) => continue,
            Err(other) => return Err(other),
        };
        let run = NewRun {
            job: &job,
            occurrence,
            attempt,
            trigger,
            status: RunStatus::Running,
        };
        started.extend(insert_run(tx, run, claim)?);
    }
    Ok(started)
}

fn claim(
    tx: &rusqlite::Transaction<'_>,
    claim: &Claim,
    next_of: &NextOccurrence,
) -> Result<Vec<ClaimedRun>, AgentError> {
    let now = claim.now_ms;

    // Runs whose scheduler stopped renewing them.
    let expired = tx.execute(
        "UPDATE schedule_runs SET status = 'interrupted', ended_at = ?1,
             error = 'the scheduler running it stopped (its lease expired)'
         WHERE status = 'running' AND lease_until < ?1",
        [now],
    )?;
    if expired > 0 {
        tracing::warn!(runs = expired, "runs interrupted by a stopped scheduler");
    }
    // One retry of each interrupted first attempt under `run_once`.
    let interrupted: Vec<(String, i64)> = {
        let mut statement = tx.prepare(
            "UPDATE schedule_runs SET retried = 1
             WHERE id IN (
                 SELECT r.id FROM schedule_runs r JOIN schedule_jobs j ON j.id = r.job_id
                 WHERE r.status = 'interrupted' AND r.retried = 0 AND r.attempt = 1
                   AND j.missed = 'run_once' AND j.enabled = 1)
             RETURNING job_id, occurrence_ms",
        )?;
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut claimed = start_runs(tx, claim, interrupted, 2, "retry")?;
    // Runs asked for.
    let requested: Vec<(String, i64)> = {
        let mut statement = tx.prepare(
            "SELECT id, run_requested_ms FROM schedule_jobs
             WHERE run_requested_ms IS NOT NULL AND run_requested_ms <= ?1 LIMIT ?2",
        )?;
        statement
            .query_map(params![now, claim.limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?
    };
    for (job_id, _) in &requested {
        tx.execute(
            "UPDATE schedule_jobs SET run_requested_ms = NULL WHERE id = ?1",
            [job_id],
        )?;
    }
    claimed.extend(start_runs(tx, claim, requested, 1, "manual")?);
    // Occurrences due.
    let due: Vec<StoredJob> = {
        let mut statement = tx.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM schedule_jobs
             WHERE enabled = 1 AND next_run_ms <= ?1 ORDER BY next_run_ms LIMIT ?2"
        ))?;
        statement
            .query_map(
                params![now, claim.limit.saturating_sub(claimed.len()) as i64],
                read_job,
            )?
            .collect::<rusqlite::Result<_>>()?
    };
    for stored in due {
        let job = &stored.job;
        let (occurrence, next, status) = match claim.decide(&stored, next_of) {
            Due::Claim {
                occurrence_ms,
                next_ms,
                status,
            } => (occurrence_ms, next_ms, status),
            Due::Disable(error) => {
                tracing::error!(job = %job.id, %error, "stored schedule unreadable; job disabled");
                tx.execute(
                    "UPDATE schedule_jobs SET enabled = 0, next_run_ms = NULL WHERE id = ?1",
                    [&job.id],
                )?;
                continue;
            }
            Due::Nothing => continue,
        };
        let changed = tx.execute(
            "UPDATE schedule_jobs SET next_run_ms = ?3 WHERE id = ?1 AND next_run_ms = ?2",
            params![job.id, occurrence, next],
        )?;
        if changed == 0 {
            continue;
        }
        let run = NewRun {
            job,
            occurrence,
            attempt: 1,
            trigger: "schedule",
            status,
        };
        claimed.extend(insert_run(tx, run, claim)?);
    }
    Ok(claimed)
}

fn finish(
    tx: &rusqlite::Transaction<'_>,
    run_id: i64,
    owner: &str,
    outcome: &RunOutcome,
    now: i64,
) -> Result<Finished, AgentError> {
    let (status, reply, error, prompt, completion) = match outcome {
        RunOutcome::Ok {
            reply,
            prompt_tokens,
            completion_tokens,
        } => (
            RunStatus::Ok,
            Some(reply.as_str()),
            None,
            *prompt_tokens,
            *completion_tokens,
        ),
        RunOutcome::Failed(error) => (RunStatus::Error, None, Some(error.as_str()), 0, 0),
    };
    let changed = tx.execute(
        "UPDATE schedule_runs SET status = ?3, ended_at = ?4, reply = ?5, error = ?6,
             prompt_tokens = ?7, completion_tokens = ?8, lease_until = NULL
         WHERE id = ?1 AND owner = ?2 AND status = 'running'",
        params![
            run_id,
            owner,
            status.as_str(),
            now,
            reply,
            error,
            prompt,
            completion
        ],
    )?;
    let mut finished = Finished {
        recorded: changed == 1,
        ..Finished::default()
    };
    if !finished.recorded {
        return Ok(finished);
    }
    let (job_id, occurrence): (String, i64) = tx.query_row(
        "SELECT job_id, occurrence_ms FROM schedule_runs WHERE id = ?1",
        [run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let job = match load(tx, &job_id) {
        Ok(stored) => stored.job,
        Err(AgentError::JobNotFound(_)) => return Ok(finished),
        Err(other) => return Err(other),
    };
    let effects = after_run(&job, run_id, occurrence, outcome);
    tx.execute(
        "UPDATE schedule_jobs SET failures = ?2, last_status = ?3, updated_at = ?4,
             enabled = CASE WHEN ?5 THEN 0 ELSE enabled END,
             next_run_ms = CASE WHEN ?5 THEN NULL ELSE next_run_ms END
         WHERE id = ?1",
        params![
            job.id,
            effects.failures,
            effects.status.as_str(),
            now,
            effects.disable
        ],
    )?;
    if let Some(delivery) = &effects.delivery {
        finished.queued = queue_delivery(tx, delivery, now)?;
    }
    finished.disabled = effects.disable;
    Ok(finished)
}

fn write_job(tx: &rusqlite::Transaction<'_>, stored: &StoredJob) -> rusqlite::Result<()> {
    let job = &stored.job;
    tx.execute(
        "UPDATE schedule_jobs SET name = ?2, schedule = ?3, anchor_ms = ?4, \
         message = ?5, enabled = ?6, missed = ?7, failures = ?8, next_run_ms = ?9, \
         updated_at = ?10 WHERE id = ?1",
        params![
            job.id,
            job.name,
            to_json(&job.schedule),
            stored.anchor_ms,
            job.message,
            job.enabled,
            job.missed.as_str(),
            job.consecutive_failures,
            job.next_run_ms,
            job.updated_at_ms,
        ],
    )?;
    Ok(())
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert_job(&self, stored: &StoredJob, max_jobs: u64) -> ocg_core::Result<()> {
        let stored = stored.clone();
        self.write(move |tx| {
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM schedule_jobs", [], |r| r.get(0))?;
            if u64::try_from(count).unwrap_or(0) >= max_jobs {
                return Err(AgentError::InvalidInput(format!(
                    "there are {max_jobs} jobs already; delete some first"
                )));
            }
            let job = &stored.job;
            tx.execute(
                "INSERT INTO schedule_jobs (id, name, schedule, anchor_ms, message, session, \
                 deliver, origin, enabled, missed, disable_after, next_run_ms, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    job.id,
                    job.name,
                    to_json(&job.schedule),
                    stored.anchor_ms,
                    job.message,
                    to_json(&job.session),
                    job.deliver.as_ref().map(to_json),
                    job.origin,
                    job.enabled,
                    job.missed.as_str(),
                    job.disable_after_failures,
                    job.next_run_ms,
                    job.created_at_ms,
                    job.updated_at_ms,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn jobs(&self) -> ocg_core::Result<Vec<Job>> {
        self.run(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM schedule_jobs
                 ORDER BY next_run_ms IS NULL, next_run_ms, created_at"
            ))?;
            let jobs = statement
                .query_map([], |row| read_job(row).map(|stored| stored.job))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn count_jobs_from(&self, origin: Option<&str>) -> ocg_core::Result<u64> {
        let origin = origin.map(str::to_owned);
        self.run(move |conn| {
            let count: i64 = conn.query_row(
                "SELECT COUNT(*) FROM schedule_jobs WHERE origin IS ?1",
                [origin],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn job(&self, id: &str) -> ocg_core::Result<StoredJob> {
        let id = id.to_owned();
        self.run(move |conn| load(conn, &id)).await
    }

    async fn edit_job(&self, id: &str, edit: JobEdit) -> ocg_core::Result<Job> {
        let id = id.to_owned();
        self.write(move |tx| {
            let stored = edit(load(tx, &id)?).map_err(AgentError::Jobs)?;
            write_job(tx, &stored)?;
            Ok(stored.job)
        })
        .await
    }

    async fn delete_job(&self, id: &str) -> ocg_core::Result<()> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM schedule_deliveries WHERE job_id = ?1 AND state = 'pending'",
                [&id],
            )?;
            if tx.execute("DELETE FROM schedule_jobs WHERE id = ?1", [&id])? == 0 {
                return Err(AgentError::JobNotFound(id));
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn runs(&self, id: &str, limit: u64) -> ocg_core::Result<Vec<JobRun>> {
        let id = id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            load(conn, &id)?;
            let mut statement = conn.prepare(
                "SELECT r.*, d.state AS delivery_state, d.error AS delivery_error
                 FROM schedule_runs r
                 LEFT JOIN schedule_deliveries d ON d.run_id = r.id
                 WHERE r.job_id = ?1 ORDER BY r.id DESC LIMIT ?2",
            )?;
            let runs = statement
                .query_map(params![id, limit], read_run)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(runs)
        })
        .await
    }

    async fn request_run(&self, id: &str, now_ms: i64) -> ocg_core::Result<i64> {
        let id = id.to_owned();
        self.write(move |tx| {
            load(tx, &id)?;
            tx.execute(
                "UPDATE schedule_jobs SET run_requested_ms = COALESCE(run_requested_ms, ?2)
                 WHERE id = ?1",
                params![id, now_ms],
            )?;
            let at: i64 = tx.query_row(
                "SELECT run_requested_ms FROM schedule_jobs WHERE id = ?1",
                [&id],
                |r| r.get(0),
            )?;
            Ok(at)
        })
        .await
    }

    async fn next_wake_ms(&self) -> ocg_core::Result<Option<i64>> {
        self.run(|conn| {
            let due: Option<i64> = conn.query_row(
                "SELECT MIN(next_run_ms) FROM schedule_jobs WHERE enabled = 1",
                [],
                |r| r.get(0),
            )?;
            let requested: Option<i64> = conn.query_row(
                "SELECT MIN(run_requested_ms) FROM schedule_jobs WHERE run_requested_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            let lease: Option<i64> = conn.query_row(
                "SELECT MIN(lease_until) FROM schedule_runs WHERE status = 'running'",
                [],
                |r| r.get(0),
            )?;
            Ok([due, requested, lease].into_iter().flatten().min())
        })
        .await
    }

    async fn claim_due(
        &self,
        request: &Claim,
        next: &NextOccurrence,
    ) -> ocg_core::Result<Vec<ClaimedRun>> {
        let (request, next) = (request.clone(), next.clone());
        self.write(move |tx| claim(tx, &request, &next)).await
    }

    async fn renew(&self, owner: &str, until_ms: i64) -> ocg_core::Result<u64> {
        let owner = owner.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE schedule_runs SET lease_until = ?2
                 WHERE owner = ?1 AND status = 'running'",
                params![owner, until_ms],
            )? as u64)
        })
        .await
    }

    async fn interrupt_owned(&self, owner: &str, now_ms: i64) -> ocg_core::Result<u64> {
        let owner = owner.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE schedule_runs SET status = 'interrupted', ended_at = ?2,
                     error = 'the agent stopped during the run'
                 WHERE owner = ?1 AND status = 'running'",
                params![owner, now_ms],
            )? as u64)
        })
        .await
    }

    async fn finish(
        &self,
        run_id: i64,
        owner: &str,
        outcome: &RunOutcome,
        now_ms: i64,
    ) -> ocg_core::Result<Finished> {
        let (owner, outcome) = (owner.to_owned(), outcome.clone());
        self.write(move |tx| finish(tx, run_id, &owner, &outcome, now_ms))
            .await
    }

    async fn enqueue(&self, delivery: &NewDelivery, now_ms: i64) -> ocg_core::Result<bool> {
        let delivery = delivery.clone();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let queued = queue_delivery(&tx, &delivery, now_ms)?;
            tx.commit()?;
            Ok(queued)
        })
        .await
    }

    async fn pending(
        &self,
        channels: &[String],
        limit: usize,
        now_ms: i64,
    ) -> ocg_core::Result<Vec<Delivery>> {
        let channels = to_json(&channels);
        self.run(move |conn| {
            let mut statement = conn.prepare(
                "SELECT key, channel, target, text, created_at FROM schedule_deliveries
                 WHERE state = 'pending' AND channel != 'webhook' AND not_before <= ?3
                   AND (json_array_length(?1) = 0
                        OR channel IN (SELECT value FROM json_each(?1)))
                 ORDER BY created_at LIMIT ?2",
            )?;
            let rows = statement
                .query_map(params![channels, limit as i64, now_ms], |row| {
                    Ok(Delivery {
                        key: row.get(0)?,
                        channel: row.get(1)?,
                        target: from_json(&row.get::<_, String>(2)?)?,
                        text: row.get(3)?,
                        created_at_ms: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn next_webhook_retry_ms(&self) -> ocg_core::Result<Option<i64>> {
        self.run(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(not_before) FROM schedule_deliveries
                 WHERE state = 'pending' AND channel = 'webhook'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn report(
        &self,
        key: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> ocg_core::Result<()> {
        let key = key.to_owned();
        let (state, error) = match outcome {
            DeliveryOutcome::Sent => ("sent", None),
            DeliveryOutcome::Failed { error } => ("failed", Some(error.clone())),
        };
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE schedule_deliveries SET state = ?2, error = ?3, updated_at = ?4,
                     attempts = attempts + 1
                 WHERE key = ?1",
                params![key, state, error, now_ms],
            )?;
            if changed == 0 {
                return Err(AgentError::InvalidInput(format!("no delivery {key:?}")));
            }
            Ok(())
        })
        .await
    }

    async fn take_webhooks(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> ocg_core::Result<Vec<WebhookDelivery>> {
        self.write(move |tx| {
            let rows = {
                let mut statement = tx.prepare(
                    "SELECT key, target, text, job_id FROM schedule_deliveries
                     WHERE state = 'pending' AND channel = 'webhook' AND not_before <= ?1
                     ORDER BY created_at LIMIT ?2",
                )?;
                statement
                    .query_map(params![now_ms, limit as i64], |row| {
                        Ok(WebhookDelivery {
                            key: row.get(0)?,
                            url: row.get(1)?,
                            text: row.get(2)?,
                            job_id: row.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            for row in &rows {
                tx.execute(
                    "UPDATE schedule_deliveries SET state = 'sending', updated_at = ?2,
                         attempts = attempts + 1 WHERE key = ?1",
                    params![row.key, now_ms],
                )?;
            }
            Ok(rows)
        })
        .await
    }

    async fn webhook_done(
        &self,
        key: &str,
        result: Result<(), String>,
        retry_at: Option<i64>,
        max_attempts: u32,
        now_ms: i64,
    ) -> ocg_core::Result<()> {
        let key = key.to_owned();
        self.run(move |conn| {
            match (result, retry_at) {
                (Ok(()), _) => conn.execute(
                    "UPDATE schedule_deliveries SET state = 'sent', error = NULL, updated_at = ?2
                     WHERE key = ?1",
                    params![key, now_ms],
                )?,
                (Err(error), Some(at)) => conn.execute(
                    "UPDATE schedule_deliveries SET error = ?2, not_before = ?3, updated_at = ?4,
                         state = CASE WHEN attempts >= ?5 THEN 'failed' ELSE 'pending' END
                     WHERE key = ?1",
                    params![key, error, at, now_ms, max_attempts],
                )?,
                (Err(error), None) => conn.execute(
                    "UPDATE schedule_deliveries SET state = 'failed', error = ?2, updated_at = ?3
                     WHERE key = ?1",
                    params![key, error, now_ms],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn abandon_stale_sends(&self, older_than_ms: i64, now_ms: i64) -> ocg_core::Result<u64> {
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE schedule_deliveries SET state = 'failed', updated_at = ?1,
                     error = 'the agent stopped while sending; not repeated (it may have arrived)'
                 WHERE state = 'sending' AND updated_at < ?2",
                params![now_ms, now_ms - older_than_ms],
            )? as u64)
        })
        .await
    }

    async fn claim_heartbeat(
        &self,
        at_ms: i64,
        owner: &str,
        now_ms: i64,
    ) -> ocg_core::Result<bool> {
        let owner = owner.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO schedule_heartbeats (occurrence_ms, owner, claimed_at)
                 VALUES (?1, ?2, ?3)",
                params![at_ms, owner, now_ms],
            )? == 1)
        })
        .await
    }
}

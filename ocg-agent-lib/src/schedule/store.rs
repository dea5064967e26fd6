//! Jobs, runs and deliveries in the agent's SQLite database.
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

use ocg_core::ChatTarget;
use ocg_core::schedule::{
    Delivery, DeliveryOutcome, DeliveryTarget, Job, JobPatch, JobRun, JobSession, MissedPolicy,
    NewJob, RunStatus, Schedule,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use super::clock::Clock;
use super::plan::Plan;
use crate::AgentError;
use crate::runtime::check_session_key;

/// The most jobs one database holds.
pub const MAX_JOBS: i64 = 100_000;
/// The longest prompt of a job, in characters.
pub const MAX_MESSAGE_CHARS: usize = 8_000;
/// Tries of a webhook delivery before it is given up.
pub const WEBHOOK_ATTEMPTS: i64 = 8;
/// Failed runs in a row after which the job's target hears of it once.
pub const NOTICE_AFTER_FAILURES: u32 = 3;

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

/// A run a scheduler claimed and must now execute.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    /// The run's id.
    pub run_id: i64,
    /// Its job.
    pub job: Job,
    /// The occurrence.
    pub occurrence_ms: i64,
    /// The session to run in.
    pub session_key: String,
    /// `schedule`, `manual` or `retry`.
    pub trigger: String,
}

/// How an executed run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The model answered.
    Ok {
        /// The reply.
        reply: String,
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Completion tokens.
        completion_tokens: u32,
    },
    /// The turn failed.
    Failed(String),
}

/// A webhook delivery to POST.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    /// Idempotency key.
    pub key: String,
    /// The URL.
    pub url: String,
    /// The text.
    pub text: String,
    /// The job, when it came from one.
    pub job_id: Option<String>,
}

/// The scheduling tables of the agent's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ScheduleStore {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    /// Woken when jobs change (the scheduler recomputes its sleep).
    pub(crate) jobs_changed: Arc<Notify>,
    /// Woken when a delivery is queued.
    pub(crate) deliveries_queued: Arc<Notify>,
    /// Set by [`close`](ScheduleStore::close): long polls end.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Ok => "ok",
        RunStatus::Error => "error",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Skipped => "skipped",
    }
}

fn parse_status(name: &str) -> RunStatus {
    match name {
        "running" => RunStatus::Running,
        "ok" => RunStatus::Ok,
        "error" => RunStatus::Error,
        "skipped" => RunStatus::Skipped,
        _ => RunStatus::Interrupted,
    }
}

fn missed_name(policy: MissedPolicy) -> &'static str {
    match policy {
        MissedPolicy::RunOnce => "run_once",
        MissedPolicy::Skip => "skip",
    }
}

const JOB_COLUMNS: &str = "id, name, schedule, anchor_ms, message, session, deliver, origin, \
    enabled, missed, disable_after, failures, next_run_ms, last_status, last_run_ms, created_at, \
    updated_at";

fn read_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Job, i64)> {
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
        missed: if row.get::<_, String>("missed")? == "skip" {
            MissedPolicy::Skip
        } else {
            MissedPolicy::RunOnce
        },
        disable_after_failures: row.get("disable_after")?,
        consecutive_failures: row.get("failures")?,
        next_run_ms: row.get("next_run_ms")?,
        last_status: last_status.as_deref().map(parse_status),
        last_run_ms: row.get("last_run_ms")?,
        created_at_ms: row.get("created_at")?,
        updated_at_ms: row.get("updated_at")?,
    };
    Ok((job, row.get("anchor_ms")?))
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
        status: parse_status(&row.get::<_, String>("status")?),
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

/// The plan of a stored job.
fn plan_of(job: &Job, anchor_ms: i64, now_ms: i64) -> Result<Plan, AgentError> {
    Plan::new(&job.schedule, now_ms, anchor_ms).map(|(plan, _)| plan)
}

/// A job's message, trimmed, or why it is refused.
fn checked_message(message: &str) -> Result<String, AgentError> {
    let message = message.trim();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AgentError::InvalidInput(format!(
            "a job's message is 1 to {MAX_MESSAGE_CHARS} characters"
        )));
    }
    Ok(message.to_owned())
}

/// Check a delivery target's shape (a webhook's address is checked when it
/// is sent, as `web_fetch` checks its URLs).
pub fn check_target(target: &DeliveryTarget) -> Result<(), AgentError> {
    match target {
        DeliveryTarget::Chat { channel, target } => {
            let name_ok = !channel.is_empty()
                && channel.len() <= 32
                && channel
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !name_ok || ["web", "api", "cron", "webhook"].contains(&channel.as_str()) {
                return Err(AgentError::InvalidInput(format!(
                    "{channel:?} is not a chat channel (telegram, …); a web or API session \
                     gets its replies by running the job in it"
                )));
            }
            let id_ok = |id: &str| {
                !id.trim().is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
            };
            if !id_ok(&target.chat_id) || !target.thread_id.as_deref().is_none_or(id_ok) {
                return Err(AgentError::InvalidInput(
                    "a chat id is 1 to 128 characters without control characters".into(),
                ));
            }
            Ok(())
        }
        DeliveryTarget::Webhook { url } => {
            let parsed = reqwest::Url::parse(url.trim())
                .map_err(|e| AgentError::InvalidInput(format!("{url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(AgentError::InvalidInput(format!(
                    "{url:?}: a webhook is an http or https URL with a host"
                )));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(AgentError::InvalidInput(
                    "a webhook URL must not carry a user name or password".into(),
                ));
            }
            Ok(())
        }
    }
}

/// The chat a session key belongs to (`telegram:42` or `telegram:42:7`);
/// `None` for web, API, job and other sessions without a channel.
pub fn chat_of_session(key: &str) -> Option<DeliveryTarget> {
    let mut parts = key.splitn(3, ':');
    let channel = parts.next()?;
    let chat_id = parts.next().filter(|c| !c.is_empty())?;
    let target = DeliveryTarget::Chat {
        channel: channel.to_owned(),
        target: ChatTarget {
            chat_id: chat_id.to_owned(),
            thread_id: parts.next().map(str::to_owned),
        },
    };
    check_target(&target).ok().map(|()| target)
}

/// The idempotency key part naming a target.
fn target_key(target: &DeliveryTarget) -> String {
    match target {
        DeliveryTarget::Chat { channel, target } => match &target.thread_id {
            Some(thread) => format!("{channel}:{}:{thread}", target.chat_id),
            None => format!("{channel}:{}", target.chat_id),
        },
        DeliveryTarget::Webhook { url } => format!("webhook:{url}"),
    }
}

fn queue_delivery(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    job_id: Option<&str>,
    run_id: Option<i64>,
    target: &DeliveryTarget,
    text: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let (channel, target_json) = match target {
        DeliveryTarget::Chat { channel, target } => (channel.as_str(), to_json(target)),
        DeliveryTarget::Webhook { url } => ("webhook", url.clone()),
    };
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO schedule_deliveries
            (key, job_id, run_id, channel, target, text, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        params![key, job_id, run_id, channel, target_json, text, now],
    )?;
    Ok(inserted == 1)
}

impl ScheduleStore {
    /// Open the scheduling tables in the database at `path` (the agent's
    /// session database; they live beside the sessions).
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        Self::init(Connection::open(path)?, clock)
    }

    /// A private in-memory database (tests, examples).
    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        Self::init(Connection::open_in_memory()?, clock)
    }

    fn init(conn: Connection, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(ScheduleStore {
            conn: Arc::new(Mutex::new(conn)),
            clock,
            jobs_changed: Arc::default(),
            deliveries_queued: Arc::default(),
            closing: Arc::default(),
        })
    }

    /// End the long polls of [`wait_pending`](Self::wait_pending) now and
    /// from now on (the agent is shutting down; a waiting gateway must not
    /// hold its exit up).
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.deliveries_queued.notify_waiters();
    }

    /// The clock this store dates with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Now, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, i64) -> Result<T, AgentError> + Send + 'static,
    ) -> Result<T, AgentError> {
        let conn = self.conn.clone();
        let now = self.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn, now)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("schedule store task failed: {e}")))?
    }

    /// Check and store a new job; its first occurrence is computed now.
    pub async fn create(&self, new: NewJob) -> Result<Job, AgentError> {
        let now = self.clock.now_ms();
        let message = checked_message(&new.message)?;
        let (plan, schedule) = Plan::new(&new.schedule, now, now)?;
        let next = plan.next_after(now - 1);
        if matches!(plan, Plan::At(_)) && next.is_none_or(|at| at < now - 1_000) {
            return Err(AgentError::InvalidInput(format!(
                "{} is in the past",
                match &schedule {
                    Schedule::At { at } => at.as_str(),
                    _ => "the time",
                }
            )));
        }
        if let JobSession::Named { key } = &new.session {
            check_session_key(key)?;
        }
        if let Some(target) = &new.deliver {
            check_target(target)?;
        }
        if let Some(origin) = &new.origin {
            check_session_key(origin)?;
        }
        let name = match new.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => message.chars().take(60).collect(),
        };
        if name.chars().count() > 200 {
            return Err(AgentError::InvalidInput(
                "a name is at most 200 characters".into(),
            ));
        }
        let id = crate::memory::new_id();
        let job = Job {
            id: id.clone(),
            name,
            schedule,
            message,
            session: new.session,
            deliver: new.deliver,
            origin: new.origin,
            enabled: new.enabled,
            missed: new.missed,
            disable_after_failures: new.disable_after_failures,
            consecutive_failures: 0,
            next_run_ms: next,
            last_status: None,
            last_run_ms: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let stored = job.clone();
        self.run(move |conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM schedule_jobs", [], |r| r.get(0))?;
            if count >= MAX_JOBS {
                return Err(AgentError::InvalidInput(format!(
                    "there are {MAX_JOBS} jobs already; delete some first"
                )));
            }
            tx.execute(
                "INSERT INTO schedule_jobs (id, name, schedule, anchor_ms, message, session, \
                 deliver, origin, enabled, missed, disable_after, next_run_ms, created_at, \
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
                params![
                    stored.id,
                    stored.name,
                    to_json(&stored.schedule),
                    now,
                    stored.message,
                    to_json(&stored.session),
                    stored.deliver.as_ref().map(to_json),
                    stored.origin,
                    stored.enabled,
                    missed_name(stored.missed),
                    stored.disable_after_failures,
                    stored.next_run_ms,
                    now,
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.jobs_changed.notify_one();
        tracing::info!(job = %id, next = ?job.next_run_ms, "job created");
        Ok(job)
    }

    /// Every job, soonest next run first (those without one last).
    pub async fn list(&self) -> Result<Vec<Job>, AgentError> {
        self.run(|conn, _| {
            let mut statement = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM schedule_jobs
                 ORDER BY next_run_ms IS NULL, next_run_ms, created_at"
            ))?;
            let jobs = statement
                .query_map([], |row| read_job(row).map(|(job, _)| job))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(jobs)
        })
        .await
    }

    /// How many jobs were created from session `origin` (`None`: from none).
    pub async fn count_from(&self, origin: Option<&str>) -> Result<usize, AgentError> {
        let origin = origin.map(str::to_owned);
        self.run(move |conn, _| {
            let count: i64 = conn.query_row(
                "SELECT COUNT(*) FROM schedule_jobs WHERE origin IS ?1",
                [origin],
                |r| r.get(0),
            )?;
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
        .await
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Job, AgentError> {
        let id = id.to_owned();
        self.run(move |conn, _| Ok(load(conn, &id)?.0)).await
    }

    /// Apply `patch`; a new schedule or a resume recomputes the next run.
    pub async fn update(&self, id: &str, patch: JobPatch) -> Result<Job, AgentError> {
        let id = id.to_owned();
        let job = self
            .run(move |conn, now| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let (mut job, mut anchor) = load(&tx, &id)?;
                if let Some(name) = patch.name {
                    let name = name.trim().to_owned();
                    if name.is_empty() || name.chars().count() > 200 {
                        return Err(AgentError::InvalidInput(
                            "a name is 1 to 200 characters".into(),
                        ));
                    }
                    job.name = name;
                }
                if let Some(message) = patch.message {
                    job.message = checked_message(&message)?;
                }
                if let Some(missed) = patch.missed {
                    job.missed = missed;
                }
                let (mut recompute, mut new_time) = (false, false);
                if let Some(schedule) = patch.schedule {
                    let (plan, normalized) = Plan::new(&schedule, now, now)?;
                    if let (Plan::At(at), Schedule::At { at: text }) = (&plan, &normalized) {
                        if *at < now - 1_000 {
                            return Err(AgentError::InvalidInput(format!("{text} is in the past")));
                        }
                        // A new time for a one-shot: it runs again.
                        new_time = true;
                    }
                    job.schedule = normalized;
                    anchor = now;
                    recompute = true;
                }
                if let Some(enabled) = patch.enabled {
                    recompute |= enabled && !job.enabled;
                    if enabled && !job.enabled {
                        job.consecutive_failures = 0;
                    }
                    job.enabled = enabled;
                }
                if !job.enabled {
                    job.next_run_ms = None;
                } else if recompute {
                    let plan = plan_of(&job, anchor, now)?;
                    job.next_run_ms = match plan {
                        // A one-shot resumed after its time runs once now.
                        Plan::At(at) if new_time || job.last_run_ms.is_none() => Some(at.max(now)),
                        Plan::At(at) => (at > now).then_some(at),
                        other => other.next_after(now),
                    };
                }
                job.updated_at_ms = now;
                tx.execute(
                    "UPDATE schedule_jobs SET name = ?2, schedule = ?3, anchor_ms = ?4, \
                     message = ?5, enabled = ?6, missed = ?7, failures = ?8, next_run_ms = ?9, \
                     updated_at = ?10 WHERE id = ?1",
                    params![
                        job.id,
                        job.name,
                        to_json(&job.schedule),
                        anchor,
                        job.message,
                        job.enabled,
                        missed_name(job.missed),
                        job.consecutive_failures,
                        job.next_run_ms,
                        now,
                    ],
                )?;
                tx.commit()?;
                Ok(job)
            })
            .await?;
        self.jobs_changed.notify_one();
        Ok(job)
    }

    /// Delete a job and its runs.
    pub async fn delete(&self, id: &str) -> Result<(), AgentError> {
        let id = id.to_owned();
        self.run(move |conn, _| {
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
        .await?;
        self.jobs_changed.notify_one();
        Ok(())
    }

    /// A job's latest runs, newest first.
    pub async fn runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>, AgentError> {
        let id = id.to_owned();
        let limit = limit.clamp(1, 1000) as i64;
        self.run(move |conn, _| {
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

    /// Ask for a run now; the scheduler claims it like an occurrence.
    /// Asking again before it starts asks for the same run.
    pub async fn request_run(&self, id: &str) -> Result<i64, AgentError> {
        let id = id.to_owned();
        let at = self
            .run(move |conn, now| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                load(&tx, &id)?;
                tx.execute(
                    "UPDATE schedule_jobs SET run_requested_ms = COALESCE(run_requested_ms, ?2)
                     WHERE id = ?1",
                    params![id, now],
                )?;
                let at: i64 = tx.query_row(
                    "SELECT run_requested_ms FROM schedule_jobs WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )?;
                tx.commit()?;
                Ok(at)
            })
            .await?;
        self.jobs_changed.notify_one();
        Ok(at)
    }

    /// When the scheduler has something to do next: the earliest due job,
    /// requested run or lease to expire (Unix ms).
    pub async fn next_wake_ms(&self) -> Result<Option<i64>, AgentError> {
        self.run(|conn, _| {
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

    /// Claim what is due at the store's now for `owner`, in one
    /// transaction: runs whose lease expired become `interrupted` (and, under
    /// `run_once`, get one retry), requested runs start, and each due job's
    /// occurrence is claimed and its next one computed. An occurrence later
    /// than `late_after_ms` was missed (the agent was down): under `skip` it
    /// is recorded as skipped, under `run_once` the missed occurrences run
    /// once. At most `limit` runs are claimed; the rest stay due.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease_ms: i64,
        late_after_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, AgentError> {
        let owner = owner.to_owned();
        let claimed = self
            .run(move |conn, now| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let claimed = claim(&tx, &owner, now, lease_ms, late_after_ms, limit)?;
                tx.commit()?;
                Ok(claimed)
            })
            .await?;
        Ok(claimed)
    }

    /// Extend the leases of `owner`'s running runs to `now + lease_ms`.
    pub async fn renew(&self, owner: &str, lease_ms: i64) -> Result<usize, AgentError> {
        let owner = owner.to_owned();
        self.run(move |conn, now| {
            Ok(conn.execute(
                "UPDATE schedule_runs SET lease_until = ?2
                 WHERE owner = ?1 AND status = 'running'",
                params![owner, now + lease_ms],
            )?)
        })
        .await
    }

    /// Mark `owner`'s running runs interrupted (a clean shutdown); they are
    /// retried by policy when a scheduler next claims.
    pub async fn interrupt_owned(&self, owner: &str) -> Result<usize, AgentError> {
        let owner = owner.to_owned();
        self.run(move |conn, now| {
            Ok(conn.execute(
                "UPDATE schedule_runs SET status = 'interrupted', ended_at = ?2,
                     error = 'the agent stopped during the run'
                 WHERE owner = ?1 AND status = 'running'",
                params![owner, now],
            )?)
        })
        .await
    }

    /// Record how `owner`'s run ended, update its job (failures, auto-disable)
    /// and queue its delivery, in one transaction. `false` when the run is
    /// no longer `owner`'s (its lease expired and another scheduler took
    /// over): then nothing is recorded or delivered.
    pub async fn finish(
        &self,
        run_id: i64,
        owner: &str,
        outcome: RunOutcome,
    ) -> Result<bool, AgentError> {
        let owner = owner.to_owned();
        let (finished, queued) = self
            .run(move |conn, now| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let result = finish(&tx, run_id, &owner, outcome, now)?;
                tx.commit()?;
                Ok(result)
            })
            .await?;
        if queued {
            self.deliveries_queued.notify_waiters();
        }
        if finished {
            self.jobs_changed.notify_one();
        }
        Ok(finished)
    }

    /// Queue a delivery outside of a job (the heartbeat); `false` when one
    /// with `key` exists.
    pub async fn enqueue(
        &self,
        key: &str,
        target: &DeliveryTarget,
        text: &str,
    ) -> Result<bool, AgentError> {
        let (key, target, text) = (key.to_owned(), target.clone(), text.to_owned());
        let queued = self
            .run(move |conn, now| {
                let tx = conn.transaction()?;
                let queued = queue_delivery(&tx, &key, None, None, &target, &text, now)?;
                tx.commit()?;
                Ok(queued)
            })
            .await?;
        if queued {
            self.deliveries_queued.notify_waiters();
        }
        Ok(queued)
    }

    /// Chat deliveries pending for `channels` (all chat channels when
    /// empty), oldest first.
    pub async fn pending(
        &self,
        channels: &[String],
        limit: usize,
    ) -> Result<Vec<Delivery>, AgentError> {
        let channels = to_json(&channels);
        self.run(move |conn, now| {
            let mut statement = conn.prepare(
                "SELECT key, channel, target, text, created_at FROM schedule_deliveries
                 WHERE state = 'pending' AND channel != 'webhook' AND not_before <= ?3
                   AND (json_array_length(?1) = 0
                        OR channel IN (SELECT value FROM json_each(?1)))
                 ORDER BY created_at LIMIT ?2",
            )?;
            let rows = statement
                .query_map(params![channels, limit as i64, now], |row| {
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

    /// [`pending`](Self::pending), waiting up to `wait` for a delivery this
    /// store queues. (One queued by another agent on the database is found
    /// by the next call: a gateway polls again when a wait ends empty.)
    pub async fn wait_pending(
        &self,
        channels: &[String],
        limit: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<Delivery>, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let queued = self.deliveries_queued.notified();
            let found = self.pending(channels, limit).await?;
            let now = tokio::time::Instant::now();
            let closing = self.closing.load(std::sync::atomic::Ordering::SeqCst);
            if !found.is_empty() || now >= deadline || closing {
                return Ok(found);
            }
            let _ = tokio::time::timeout_at(deadline, queued).await;
        }
    }

    /// When the earliest webhook retry is due (Unix ms), if one waits.
    pub async fn next_webhook_retry_ms(&self) -> Result<Option<i64>, AgentError> {
        self.run(|conn, _| {
            Ok(conn.query_row(
                "SELECT MIN(not_before) FROM schedule_deliveries
                 WHERE state = 'pending' AND channel = 'webhook'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Record what a gateway did with a delivery.
    pub async fn report(&self, key: &str, outcome: DeliveryOutcome) -> Result<(), AgentError> {
        let key = key.to_owned();
        self.run(move |conn, now| {
            let (state, error) = match outcome {
                DeliveryOutcome::Sent => ("sent", None),
                DeliveryOutcome::Failed { error } => ("failed", Some(error)),
            };
            let changed = conn.execute(
                "UPDATE schedule_deliveries SET state = ?2, error = ?3, updated_at = ?4,
                     attempts = attempts + 1
                 WHERE key = ?1",
                params![key, state, error, now],
            )?;
            if changed == 0 {
                return Err(AgentError::InvalidInput(format!("no delivery {key:?}")));
            }
            Ok(())
        })
        .await
    }

    /// Take the webhook deliveries due, marking them `sending` first: one
    /// found `sending` later (the agent stopped mid-request) is never sent
    /// again, see [`abandon_stale_sends`](Self::abandon_stale_sends).
    pub async fn take_webhooks(&self, limit: usize) -> Result<Vec<WebhookDelivery>, AgentError> {
        self.run(move |conn, now| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows = {
                let mut statement = tx.prepare(
                    "SELECT key, target, text, job_id FROM schedule_deliveries
                     WHERE state = 'pending' AND channel = 'webhook' AND not_before <= ?1
                     ORDER BY created_at LIMIT ?2",
                )?;
                statement
                    .query_map(params![now, limit as i64], |row| {
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
                    params![row.key, now],
                )?;
            }
            tx.commit()?;
            Ok(rows)
        })
        .await
    }

    /// Record a webhook's result: sent, failed for good, or (`retry_at`)
    /// known not to have arrived and to be tried again then.
    pub async fn webhook_done(
        &self,
        key: &str,
        result: Result<(), String>,
        retry_at: Option<i64>,
    ) -> Result<(), AgentError> {
        let key = key.to_owned();
        self.run(move |conn, now| {
            match (result, retry_at) {
                (Ok(()), _) => conn.execute(
                    "UPDATE schedule_deliveries SET state = 'sent', error = NULL, updated_at = ?2
                     WHERE key = ?1",
                    params![key, now],
                )?,
                (Err(error), Some(at)) => conn.execute(
                    "UPDATE schedule_deliveries SET error = ?2, not_before = ?3, updated_at = ?4,
                         state = CASE WHEN attempts >= ?5 THEN 'failed' ELSE 'pending' END
                     WHERE key = ?1",
                    params![key, error, at, now, WEBHOOK_ATTEMPTS],
                )?,
                (Err(error), None) => conn.execute(
                    "UPDATE schedule_deliveries SET state = 'failed', error = ?2, updated_at = ?3
                     WHERE key = ?1",
                    params![key, error, now],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Webhook deliveries left `sending` for longer than `older_than_ms`
    /// (their agent stopped mid-request) become `failed` without a resend:
    /// whether they arrived is unknown, and at most once is the promise.
    pub async fn abandon_stale_sends(&self, older_than_ms: i64) -> Result<usize, AgentError> {
        self.run(move |conn, now| {
            Ok(conn.execute(
                "UPDATE schedule_deliveries SET state = 'failed', updated_at = ?1,
                     error = 'the agent stopped while sending; not repeated (it may have arrived)'
                 WHERE state = 'sending' AND updated_at < ?2",
                params![now, now - older_than_ms],
            )?)
        })
        .await
    }

    /// Claim the heartbeat's occurrence `at`; `false` when another
    /// scheduler on this database already did.
    pub async fn claim_heartbeat(&self, at: i64, owner: &str) -> Result<bool, AgentError> {
        let owner = owner.to_owned();
        self.run(move |conn, now| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO schedule_heartbeats (occurrence_ms, owner, claimed_at)
                 VALUES (?1, ?2, ?3)",
                params![at, owner, now],
            )? == 1)
        })
        .await
    }
}

fn load(conn: &Connection, id: &str) -> Result<(Job, i64), AgentError> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM schedule_jobs WHERE id = ?1"),
        [id],
        read_job,
    )
    .optional()?
    .ok_or_else(|| AgentError::JobNotFound(id.to_owned()))
}

fn session_for(job: &Job, run_id: i64) -> String {
    match &job.session {
        JobSession::Named { key } => key.clone(),
        JobSession::Isolated => format!("cron:{}:{run_id}", job.id),
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_run(
    tx: &rusqlite::Transaction<'_>,
    job: &Job,
    occurrence: i64,
    attempt: u32,
    trigger: &str,
    status: RunStatus,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<ClaimedRun>, AgentError> {
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
            status_name(status),
            owner,
            lease_until,
            now,
            (status != RunStatus::Running).then_some(now),
        ],
    )?;
    if inserted == 0 {
        tracing::warn!(job = %job.id, occurrence, attempt, "occurrence already claimed");
        return Ok(None);
    }
    let run_id = tx.last_insert_rowid();
    let session_key = session_for(job, run_id);
    tx.execute(
        "UPDATE schedule_runs SET session_key = ?2 WHERE id = ?1",
        params![run_id, session_key],
    )?;
    tx.execute(
        "UPDATE schedule_jobs SET last_status = ?2, last_run_ms = ?3 WHERE id = ?1",
        params![job.id, status_name(status), now],
    )?;
    Ok((status == RunStatus::Running).then(|| ClaimedRun {
        run_id,
        job: job.clone(),
        occurrence_ms: occurrence,
        session_key,
        trigger: trigger.to_owned(),
    }))
}

fn claim(
    tx: &rusqlite::Transaction<'_>,
    owner: &str,
    now: i64,
    lease_ms: i64,
    late_after_ms: i64,
    limit: usize,
) -> Result<Vec<ClaimedRun>, AgentError> {
    let lease_until = now + lease_ms;
    let mut claimed = Vec::new();

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
    let interrupted: Vec<(i64, String, i64)> = {
        let mut statement = tx.prepare(
            "SELECT r.id, r.job_id, r.occurrence_ms FROM schedule_runs r
             JOIN schedule_jobs j ON j.id = r.job_id
             WHERE r.status = 'interrupted' AND r.retried = 0 AND r.attempt = 1
               AND j.missed = 'run_once' AND j.enabled = 1",
        )?;
        statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (run_id, job_id, occurrence) in interrupted {
        tx.execute(
            "UPDATE schedule_runs SET retried = 1 WHERE id = ?1",
            [run_id],
        )?;
        let (job, _) = load(tx, &job_id)?;
        claimed.extend(insert_run(
            tx,
            &job,
            occurrence,
            2,
            "retry",
            RunStatus::Running,
            owner,
            now,
            lease_until,
        )?);
    }
    // Runs asked for.
    let requested: Vec<(String, i64)> = {
        let mut statement = tx.prepare(
            "SELECT id, run_requested_ms FROM schedule_jobs
             WHERE run_requested_ms IS NOT NULL AND run_requested_ms <= ?1 LIMIT ?2",
        )?;
        statement
            .query_map(params![now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (job_id, at) in requested {
        tx.execute(
            "UPDATE schedule_jobs SET run_requested_ms = NULL WHERE id = ?1",
            [&job_id],
        )?;
        let (job, _) = load(tx, &job_id)?;
        claimed.extend(insert_run(
            tx,
            &job,
            at,
            1,
            "manual",
            RunStatus::Running,
            owner,
            now,
            lease_until,
        )?);
    }
    // Occurrences due.
    let due: Vec<(Job, i64)> = {
        let mut statement = tx.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM schedule_jobs
             WHERE enabled = 1 AND next_run_ms <= ?1 ORDER BY next_run_ms LIMIT ?2"
        ))?;
        statement
            .query_map(
                params![now, limit.saturating_sub(claimed.len()) as i64],
                read_job,
            )?
            .collect::<rusqlite::Result<_>>()?
    };
    for (job, anchor) in due {
        let Some(occurrence) = job.next_run_ms else {
            continue;
        };
        let next = match plan_of(&job, anchor, now) {
            Ok(plan) => plan.next_after(now.max(occurrence)),
            Err(error) => {
                tracing::error!(job = %job.id, %error, "stored schedule unreadable; job disabled");
                tx.execute(
                    "UPDATE schedule_jobs SET enabled = 0, next_run_ms = NULL WHERE id = ?1",
                    [&job.id],
                )?;
                continue;
            }
        };
        let changed = tx.execute(
            "UPDATE schedule_jobs SET next_run_ms = ?3 WHERE id = ?1 AND next_run_ms = ?2",
            params![job.id, occurrence, next],
        )?;
        if changed == 0 {
            continue;
        }
        let missed = now - occurrence > late_after_ms;
        let status = if missed && job.missed == MissedPolicy::Skip {
            tracing::info!(job = %job.id, occurrence, "occurrence missed during downtime; skipped");
            RunStatus::Skipped
        } else {
            RunStatus::Running
        };
        claimed.extend(insert_run(
            tx,
            &job,
            occurrence,
            1,
            "schedule",
            status,
            owner,
            now,
            lease_until,
        )?);
    }
    Ok(claimed)
}

fn finish(
    tx: &rusqlite::Transaction<'_>,
    run_id: i64,
    owner: &str,
    outcome: RunOutcome,
    now: i64,
) -> Result<(bool, bool), AgentError> {
    let (status, reply, error, prompt, completion) = match &outcome {
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
            status_name(status),
            now,
            reply,
            error,
            prompt,
            completion
        ],
    )?;
    if changed == 0 {
        tracing::warn!(
            run = run_id,
            "run no longer ours (lease expired); result dropped"
        );
        return Ok((false, false));
    }
    let (job_id, occurrence): (String, i64) = tx.query_row(
        "SELECT job_id, occurrence_ms FROM schedule_runs WHERE id = ?1",
        [run_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((job, _)) = load(tx, &job_id).map(Some).or_else(|e| match e {
        AgentError::JobNotFound(_) => Ok(None),
        other => Err(other),
    })?
    else {
        return Ok((true, false));
    };
    let failures = if status == RunStatus::Ok {
        0
    } else {
        job.consecutive_failures + 1
    };
    let disable = job.disable_after_failures > 0 && failures >= job.disable_after_failures;
    tx.execute(
        "UPDATE schedule_jobs SET failures = ?2, last_status = ?3, updated_at = ?4,
             enabled = CASE WHEN ?5 THEN 0 ELSE enabled END,
             next_run_ms = CASE WHEN ?5 THEN NULL ELSE next_run_ms END
         WHERE id = ?1",
        params![job.id, failures, status_name(status), now, disable],
    )?;
    let Some(target) = &job.deliver else {
        return Ok((true, false));
    };
    let mut queued = false;
    match &outcome {
        RunOutcome::Ok { reply, .. } => {
            let key = format!("job:{}:{occurrence}:{}", job.id, target_key(target));
            queued |= queue_delivery(tx, &key, Some(&job.id), Some(run_id), target, reply, now)?;
        }
        RunOutcome::Failed(error) => {
            // One notice at the third failure in a row, one when disabled.
            if failures == NOTICE_AFTER_FAILURES || disable {
                let mut text = format!(
                    "Scheduled job \u{201c}{}\u{201d} failed {failures} times in a row: {error}",
                    job.name
                );
                if disable {
                    text.push_str("\nIt is now disabled.");
                }
                let key = format!("job:{}:failing:{run_id}", job.id);
                queued |= queue_delivery(tx, &key, Some(&job.id), None, target, &text, now)?;
            }
        }
    }
    if disable {
        tracing::warn!(job = %job.id, failures, "job disabled after repeated failures");
    }
    Ok((true, queued))
}

//! [`ScheduleStore`]: the rules of scheduled jobs over any [`JobStore`]
//! (the agent's SQLite database by default, PostgreSQL shared by several
//! agents with `ocg-postgres`).
//!
//! What needs a job's schedule (checking a new job, its next occurrence, an
//! edit) is decided here, once; the store makes each decision atomic (see
//! [`JobStore`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ocg_core::ChatTarget;
use ocg_core::schedule::{
    Claim, ClaimedRun, Delivery, DeliveryOutcome, DeliveryTarget, Job, JobPatch, JobRun,
    JobSession, JobStore, NewDelivery, NewJob, NextOccurrence, RunOutcome, Schedule, StoredJob,
    WebhookDelivery,
};
use tokio::sync::Notify;

use super::clock::Clock;
use super::plan::Plan;
use super::sqlite::SqliteJobStore;
use crate::AgentError;
use crate::runtime::check_session_key;

/// The most jobs one store holds.
pub const MAX_JOBS: u64 = 100_000;
/// The longest prompt of a job, in characters.
pub const MAX_MESSAGE_CHARS: usize = 8_000;
/// Tries of a webhook delivery before it is given up.
pub const WEBHOOK_ATTEMPTS: u32 = 8;

/// Scheduled jobs, their runs and deliveries, over a [`JobStore`]. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct ScheduleStore {
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    /// Woken when jobs change (the scheduler recomputes its sleep).
    pub(crate) jobs_changed: Arc<Notify>,
    /// Woken when a delivery is queued.
    pub(crate) deliveries_queued: Arc<Notify>,
    /// Set by [`close`](ScheduleStore::close): long polls end.
    closing: Arc<AtomicBool>,
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

/// A job store's error as the agent's: a missing job by its id.
fn job_error(id: &str) -> impl Fn(ocg_core::Error) -> AgentError + '_ {
    move |error| match error {
        ocg_core::Error::NotFound(_) => AgentError::JobNotFound(id.to_owned()),
        ocg_core::Error::InvalidInput(message) => AgentError::InvalidInput(message),
        other => AgentError::Jobs(other),
    }
}

/// A job store's error as the agent's.
fn store_error(error: ocg_core::Error) -> AgentError {
    match error {
        ocg_core::Error::InvalidInput(message) => AgentError::InvalidInput(message),
        other => AgentError::Jobs(other),
    }
}

/// The next occurrence of a stored job after a time, by its plan.
fn next_occurrence() -> NextOccurrence {
    Arc::new(|stored: &StoredJob, after: i64| {
        plan_of(&stored.job, stored.anchor_ms, after)
            .map(|plan| plan.next_after(after))
            .map_err(Into::into)
    })
}

/// `job` changed by `patch` at `now`: a new schedule or a resume
/// recomputes the next run.
fn apply_patch(stored: StoredJob, patch: JobPatch, now: i64) -> Result<StoredJob, AgentError> {
    let StoredJob {
        mut job,
        anchor_ms: mut anchor,
    } = stored;
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
    Ok(StoredJob {
        job,
        anchor_ms: anchor,
    })
}

impl ScheduleStore {
    /// The rules over `store`, dated by `clock`.
    pub fn new(store: Arc<dyn JobStore>, clock: Arc<dyn Clock>) -> Self {
        ScheduleStore {
            store,
            clock,
            jobs_changed: Arc::default(),
            deliveries_queued: Arc::default(),
            closing: Arc::default(),
        }
    }

    /// The jobs in the SQLite database at `path` (the agent's session
    /// database; they live beside the sessions).
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        Ok(Self::new(Arc::new(SqliteJobStore::open(path)?), clock))
    }

    /// The jobs in a private in-memory SQLite database (tests, examples).
    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        Ok(Self::new(Arc::new(SqliteJobStore::in_memory()?), clock))
    }

    /// End the long polls of [`wait_pending`](Self::wait_pending) now and
    /// from now on (the agent is shutting down; a waiting gateway must not
    /// hold its exit up).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
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
        let job = Job {
            id: crate::memory::new_id(),
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
        let stored = StoredJob {
            job,
            anchor_ms: now,
        };
        self.store
            .insert_job(&stored, MAX_JOBS)
            .await
            .map_err(store_error)?;
        self.jobs_changed.notify_one();
        tracing::info!(job = %stored.job.id, next = ?stored.job.next_run_ms, "job created");
        Ok(stored.job)
    }

    /// Every job, soonest next run first (those without one last).
    pub async fn list(&self) -> Result<Vec<Job>, AgentError> {
        self.store.jobs().await.map_err(store_error)
    }

    /// How many jobs were created from session `origin` (`None`: from none).
    pub async fn count_from(&self, origin: Option<&str>) -> Result<usize, AgentError> {
        let count = self
            .store
            .count_jobs_from(origin)
            .await
            .map_err(store_error)?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Job, AgentError> {
        let stored = self.store.job(id).await.map_err(job_error(id))?;
        Ok(stored.job)
    }

    /// Apply `patch`; a new schedule or a resume recomputes the next run.
    pub async fn update(&self, id: &str, patch: JobPatch) -> Result<Job, AgentError> {
        let now = self.clock.now_ms();
        let edit = Box::new(move |stored| apply_patch(stored, patch, now).map_err(Into::into));
        let job = self.store.edit_job(id, edit).await.map_err(job_error(id))?;
        self.jobs_changed.notify_one();
        Ok(job)
    }

    /// Delete a job and its runs.
    pub async fn delete(&self, id: &str) -> Result<(), AgentError> {
        self.store.delete_job(id).await.map_err(job_error(id))?;
        self.jobs_changed.notify_one();
        Ok(())
    }

    /// A job's latest runs, newest first.
    pub async fn runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>, AgentError> {
        self.store
            .runs(id, limit.clamp(1, 1000))
            .await
            .map_err(job_error(id))
    }

    /// Ask for a run now; the scheduler claims it like an occurrence.
    /// Asking again before it starts asks for the same run.
    pub async fn request_run(&self, id: &str) -> Result<i64, AgentError> {
        let at = self
            .store
            .request_run(id, self.clock.now_ms())
            .await
            .map_err(job_error(id))?;
        self.jobs_changed.notify_one();
        Ok(at)
    }

    /// When the scheduler has something to do next: the earliest due job,
    /// requested run or lease to expire (Unix ms).
    pub async fn next_wake_ms(&self) -> Result<Option<i64>, AgentError> {
        self.store.next_wake_ms().await.map_err(store_error)
    }

    /// Claim what is due at the store's now for `owner`: runs whose lease
    /// expired become `interrupted` (and, under `run_once`, get one retry),
    /// requested runs start, and each due job's occurrence is claimed and
    /// its next one computed. An occurrence later than `late_after_ms` was
    /// missed (the agent was down): under `skip` it is recorded as skipped,
    /// under `run_once` the missed occurrences run once. At most `limit`
    /// runs are claimed; the rest stay due.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease_ms: i64,
        late_after_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, AgentError> {
        let claim = Claim {
            owner: owner.to_owned(),
            now_ms: self.clock.now_ms(),
            lease_ms,
            late_after_ms,
            limit,
        };
        self.store
            .claim_due(&claim, &next_occurrence())
            .await
            .map_err(store_error)
    }

    /// Extend the leases of `owner`'s running runs to `now + lease_ms`.
    pub async fn renew(&self, owner: &str, lease_ms: i64) -> Result<usize, AgentError> {
        let until = self.clock.now_ms() + lease_ms;
        let renewed = self.store.renew(owner, until).await.map_err(store_error)?;
        Ok(usize::try_from(renewed).unwrap_or(usize::MAX))
    }

    /// Mark `owner`'s running runs interrupted (a clean shutdown); they are
    /// retried by policy when a scheduler next claims.
    pub async fn interrupt_owned(&self, owner: &str) -> Result<usize, AgentError> {
        let interrupted = self
            .store
            .interrupt_owned(owner, self.clock.now_ms())
            .await
            .map_err(store_error)?;
        Ok(usize::try_from(interrupted).unwrap_or(usize::MAX))
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
        let finished = self
            .store
            .finish(run_id, owner, &outcome, self.clock.now_ms())
            .await
            .map_err(store_error)?;
        if !finished.recorded {
            tracing::warn!(
                run = run_id,
                "run no longer ours (lease expired); result dropped"
            );
        }
        if finished.disabled {
            tracing::warn!(run = run_id, "job disabled after repeated failures");
        }
        if finished.queued {
            self.deliveries_queued.notify_waiters();
        }
        if finished.recorded {
            self.jobs_changed.notify_one();
        }
        Ok(finished.recorded)
    }

    /// Queue a delivery outside of a job (the heartbeat); `false` when one
    /// with `key` exists.
    pub async fn enqueue(
        &self,
        key: &str,
        target: &DeliveryTarget,
        text: &str,
    ) -> Result<bool, AgentError> {
        let delivery = NewDelivery {
            key: key.to_owned(),
            job_id: None,
            run_id: None,
            target: target.clone(),
            text: text.to_owned(),
        };
        let queued = self
            .store
            .enqueue(&delivery, self.clock.now_ms())
            .await
            .map_err(store_error)?;
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
        self.store
            .pending(channels, limit, self.clock.now_ms())
            .await
            .map_err(store_error)
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
            let closing = self.closing.load(Ordering::SeqCst);
            if !found.is_empty() || now >= deadline || closing {
                return Ok(found);
            }
            let _ = tokio::time::timeout_at(deadline, queued).await;
        }
    }

    /// When the earliest webhook retry is due (Unix ms), if one waits.
    pub async fn next_webhook_retry_ms(&self) -> Result<Option<i64>, AgentError> {
        self.store
            .next_webhook_retry_ms()
            .await
            .map_err(store_error)
    }

    /// Record what a gateway did with a delivery.
    pub async fn report(&self, key: &str, outcome: DeliveryOutcome) -> Result<(), AgentError> {
        self.store
            .report(key, &outcome, self.clock.now_ms())
            .await
            .map_err(store_error)
    }

    /// Take the webhook deliveries due, marking them `sending` first: one
    /// found `sending` later (the agent stopped mid-request) is never sent
    /// again, see [`abandon_stale_sends`](Self::abandon_stale_sends).
    pub async fn take_webhooks(&self, limit: usize) -> Result<Vec<WebhookDelivery>, AgentError> {
        self.store
            .take_webhooks(limit, self.clock.now_ms())
            .await
            .map_err(store_error)
    }

    /// Record a webhook's result: sent, failed for good, or (`retry_at`)
    /// known not to have arrived and to be tried again then.
    pub async fn webhook_done(
        &self,
        key: &str,
        result: Result<(), String>,
        retry_at: Option<i64>,
    ) -> Result<(), AgentError> {
        self.store
            .webhook_done(key, result, retry_at, WEBHOOK_ATTEMPTS, self.clock.now_ms())
            .await
            .map_err(store_error)
    }

    /// Webhook deliveries left `sending` for longer than `older_than_ms`
    /// (their agent stopped mid-request) become `failed` without a resend:
    /// whether they arrived is unknown, and at most once is the promise.
    pub async fn abandon_stale_sends(&self, older_than_ms: i64) -> Result<usize, AgentError> {
        let abandoned = self
            .store
            .abandon_stale_sends(older_than_ms, self.clock.now_ms())
            .await
            .map_err(store_error)?;
        Ok(usize::try_from(abandoned).unwrap_or(usize::MAX))
    }

    /// Claim the heartbeat's occurrence `at`; `false` when another
    /// scheduler on this store already did.
    pub async fn claim_heartbeat(&self, at: i64, owner: &str) -> Result<bool, AgentError> {
        self.store
            .claim_heartbeat(at, owner, self.clock.now_ms())
            .await
            .map_err(store_error)
    }
}

//! [`Scheduler`]: claims due occurrences and runs them as agent turns.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use ocg_core::schedule::{Job, Schedule};
use ocg_core::{Agent, ChatRequest};
use tokio::task::JoinSet;

use super::clock::{millis, time_until};
use super::store::ScheduleStore;
use crate::AgentError;
use crate::tools::WebFetchTool;
use ocg_core::schedule::{ClaimedRun, RunOutcome, WebhookDelivery};

/// How the scheduler behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// How long a claimed run stays this scheduler's without a renewal; a
    /// run whose scheduler died is interrupted (and retried by policy) once
    /// it expires. Renewed every third of it.
    pub lease: Duration,
    /// An occurrence found due later than this was missed (the agent was
    /// down) and follows the job's missed-run policy.
    pub late_after: Duration,
    /// Runs claimed per pass.
    pub batch: usize,
    /// Longest sleep between passes (other schedulers on the database may
    /// have changed something).
    pub max_sleep: Duration,
    /// Whether webhooks may reach private addresses (`web_allow_private`).
    pub webhook_allow_private: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease: Duration::from_secs(60),
            late_after: Duration::from_secs(60),
            batch: 64,
            max_sleep: Duration::from_secs(30),
            webhook_allow_private: false,
        }
    }
}

/// Runs scheduled jobs on any [`Agent`]. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    store: ScheduleStore,
    agent: Arc<dyn Agent>,
    config: SchedulerConfig,
    owner: Arc<str>,
    running: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The occurrence in the job's zone, for the prompt.
fn local_time(job: &Job, at_ms: i64) -> String {
    let tz = match &job.schedule {
        Schedule::Cron { tz: Some(name), .. } => {
            jiff::tz::TimeZone::get(name).unwrap_or_else(|_| jiff::tz::TimeZone::system())
        }
        _ => jiff::tz::TimeZone::system(),
    };
    Timestamp::from_millisecond(at_ms)
        .map(|t| t.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_default()
}

/// The user message a run sends: the job's message, then a line naming
/// the job and its due time (`[Scheduled job “name”, due …]`).
pub fn run_prompt(job: &Job, occurrence_ms: i64) -> String {
    let sent = if job.deliver.is_some() {
        " Your reply is sent to the user as it is."
    } else {
        ""
    };
    // The message first: small local models answer the first thing they
    // read, and echoed a leading header back instead of doing the job.
    format!(
        "{}\n\n[Scheduled job \u{201c}{}\u{201d}, due {}.{sent}]",
        job.message,
        job.name,
        local_time(job, occurrence_ms)
    )
}

impl Scheduler {
    /// A scheduler of `store`'s jobs whose runs are turns of `agent`.
    pub fn new(store: ScheduleStore, agent: Arc<dyn Agent>, config: SchedulerConfig) -> Self {
        Scheduler {
            store,
            agent,
            config,
            owner: ocg_process::instance_id().into(),
            running: Arc::default(),
        }
    }

    /// This scheduler's name in the runs it claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The store.
    pub fn store(&self) -> &ScheduleStore {
        &self.store
    }

    /// Claim what is due now (see [`ScheduleStore::claim_due`]).
    pub async fn claim(&self) -> Result<Vec<ClaimedRun>, AgentError> {
        self.store
            .claim_due(
                &self.owner,
                millis(self.config.lease),
                millis(self.config.late_after),
                self.config.batch,
            )
            .await
    }

    /// Run one claimed occurrence to its end and record it.
    pub async fn execute(&self, run: ClaimedRun) {
        self.running.fetch_add(1, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.running);
        tracing::info!(
            job = %run.job.id,
            run = run.run_id,
            trigger = %run.trigger,
            session = %run.session_key,
            "scheduled run started"
        );
        let request = ChatRequest::user(
            run.session_key.clone(),
            run_prompt(&run.job, run.occurrence_ms),
        );
        let outcome = match self.agent.chat(request).await {
            Ok(reply) => {
                let usage = reply.usage.unwrap_or_default();
                RunOutcome::Ok {
                    reply: reply.message.content,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                }
            }
            Err(error) => RunOutcome::Failed(error.to_string()),
        };
        let ok = matches!(outcome, RunOutcome::Ok { .. });
        match self.store.finish(run.run_id, &self.owner, outcome).await {
            Ok(_) => tracing::info!(job = %run.job.id, run = run.run_id, ok, "scheduled run ended"),
            Err(error) => {
                tracing::error!(job = %run.job.id, run = run.run_id, %error, "run not recorded")
            }
        }
    }

    /// Claim what is due and run it, waiting for the runs to end (tests,
    /// benchmarks; the service uses [`spawn`](Self::spawn)).
    pub async fn run_due(&self) -> Result<usize, AgentError> {
        let runs = self.claim().await?;
        let count = runs.len();
        let mut set = JoinSet::new();
        for run in runs {
            let this = self.clone();
            set.spawn(async move { this.execute(run).await });
        }
        while set.join_next().await.is_some() {}
        Ok(count)
    }

    /// Run the scheduler until `until` completes: claims due occurrences,
    /// runs each as a turn, renews its leases, sends webhook deliveries.
    /// On the way out its unfinished runs are marked interrupted (to be
    /// retried by policy at the next start).
    pub fn spawn(
        self,
        until: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut runs = JoinSet::new();
            let webhooks = tokio::spawn(self.clone().send_webhooks());
            let renew = tokio::spawn(self.clone().renew_leases());
            tokio::pin!(until);
            loop {
                let changed = self.store.jobs_changed.notified();
                match self.claim().await {
                    Ok(claimed) => {
                        let full = claimed.len() >= self.config.batch;
                        for run in claimed {
                            let this = self.clone();
                            runs.spawn(async move { this.execute(run).await });
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(error) => tracing::error!(%error, "claiming due jobs failed"),
                }
                while runs.try_join_next().is_some() {}
                let now = self.store.now_ms();
                let wake = self.store.next_wake_ms().await.ok().flatten();
                let sleep = wake.map_or(self.config.max_sleep, |at| {
                    time_until(now, at).min(self.config.max_sleep)
                });
                tokio::select! {
                    () = &mut until => break,
                    () = changed => {}
                    () = tokio::time::sleep(sleep) => {}
                    Some(_) = runs.join_next(), if !runs.is_empty() => {}
                }
            }
            webhooks.abort();
            renew.abort();
            runs.shutdown().await;
            match self.store.interrupt_owned(&self.owner).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "runs interrupted by the shutdown"),
                Err(error) => tracing::error!(%error, "could not mark runs interrupted"),
            }
        })
    }

    async fn renew_leases(self) {
        let every = (self.config.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            if self.running.load(Ordering::SeqCst) == 0 {
                continue;
            }
            if let Err(error) = self
                .store
                .renew(&self.owner, millis(self.config.lease))
                .await
            {
                tracing::error!(%error, "renewing run leases failed");
            }
        }
    }

    async fn send_webhooks(self) {
        let sender = WebFetchTool::with_private(self.config.webhook_allow_private);
        if let Err(error) = self.store.abandon_stale_sends(5 * 60_000).await {
            tracing::error!(%error, "checking interrupted webhook sends failed");
        }
        loop {
            let queued = self.store.deliveries_queued.notified();
            match self.store.take_webhooks(16).await {
                Ok(batch) if !batch.is_empty() => {
                    for delivery in batch {
                        self.send_webhook(&sender, delivery).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "reading webhook deliveries failed"),
            }
            // Asleep until one is queued here or a retry falls due (a
            // webhook queued by another agent on the database is its own).
            let now = self.store.now_ms();
            let retry = self.store.next_webhook_retry_ms().await.ok().flatten();
            let wait = retry.map_or(self.config.max_sleep * 20, |at| time_until(now, at));
            let _ = tokio::time::timeout(wait, queued).await;
        }
    }

    async fn send_webhook(&self, sender: &WebFetchTool, delivery: WebhookDelivery) {
        let body = serde_json::json!({
            "key": delivery.key,
            "job_id": delivery.job_id,
            "text": delivery.text,
        });
        let result = sender.post_json(&delivery.url, &body, &delivery.key).await;
        let now = self.store.now_ms();
        let (result, retry_at) = match result {
            Ok(()) => (Ok(()), None),
            Err(WebhookError::Retry(why)) => (Err(why), Some(now + 30_000)),
            Err(WebhookError::Failed(why)) => (Err(why), None),
        };
        if let Err(why) = &result {
            tracing::warn!(key = %delivery.key, retry = retry_at.is_some(), "webhook delivery: {why}");
        }
        if let Err(error) = self
            .store
            .webhook_done(&delivery.key, result, retry_at)
            .await
        {
            tracing::error!(%error, "recording a webhook delivery failed");
        }
    }
}

/// Why a webhook POST did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// It did not arrive (or the receiver failed, and the idempotency key
    /// lets it drop a repeat): try again later.
    Retry(String),
    /// Refused for good, or unknown whether it arrived: not repeated.
    Failed(String),
}

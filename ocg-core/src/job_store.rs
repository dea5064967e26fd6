//! The [`JobStore`] contract: scheduled jobs, their runs and the
//! deliveries of their replies, shared by every scheduler of one store.
//!
//! A store decides nothing about time: every method is told "now" (the
//! scheduler's injected clock), and what needs a job's schedule (its next
//! occurrence, a changed job) is computed by the caller's closures
//! ([`NextOccurrence`], [`JobEdit`]) inside the store's transaction. So the
//! rules live once, in `ocg-agent-lib`'s `ScheduleStore`, and each store
//! only makes them atomic: an occurrence is claimed by one scheduler of
//! the store, once, and a run's result, its job's failure count and its
//! delivery are recorded together.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;
use crate::schedule::{
    Delivery, DeliveryOutcome, DeliveryTarget, Job, JobRun, MissedPolicy, RunStatus,
};

/// Failed runs in a row after which the job's target hears of it once.
pub const NOTICE_AFTER_FAILURES: u32 = 3;

/// A job as stored: the job and the time its schedule counts from (an
/// interval's anchor).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// The job.
    pub job: Job,
    /// Unix ms its schedule counts from.
    pub anchor_ms: i64,
}

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

/// What a scheduler claims with [`JobStore::claim_due`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The scheduler's name in the runs it claims.
    pub owner: String,
    /// Now (Unix ms).
    pub now_ms: i64,
    /// How long the claimed runs stay the owner's without a renewal.
    pub lease_ms: i64,
    /// An occurrence due longer ago than this was missed.
    pub late_after_ms: i64,
    /// The most runs to claim.
    pub limit: usize,
}

/// What a claim does with a job it found due ([`Claim::decide`]).
#[derive(Debug)]
pub enum Due {
    /// Claim `occurrence_ms`: move the job's next run to `next_ms` (if it
    /// still is `occurrence_ms`) and record a run with `status`.
    Claim {
        /// The occurrence.
        occurrence_ms: i64,
        /// The job's next occurrence after it.
        next_ms: Option<i64>,
        /// [`RunStatus::Running`], or [`RunStatus::Skipped`] for an
        /// occurrence missed under `skip`.
        status: RunStatus,
    },
    /// The job's schedule cannot be read: disable it.
    Disable(crate::Error),
    /// Nothing (the job has no next run).
    Nothing,
}

impl Claim {
    /// What this claim does with `stored`, found due: its occurrence is
    /// claimed, with the next one computed by `next` from now (or from the
    /// occurrence, were it later); one due longer ago than `late_after_ms`
    /// was missed, and under `skip` is recorded as skipped.
    pub fn decide(&self, stored: &StoredJob, next: &NextOccurrence) -> Due {
        let Some(occurrence_ms) = stored.job.next_run_ms else {
            return Due::Nothing;
        };
        match next(stored, self.now_ms.max(occurrence_ms)) {
            Ok(next_ms) => {
                let missed = self.now_ms - occurrence_ms > self.late_after_ms;
                let skip = missed && stored.job.missed == MissedPolicy::Skip;
                Due::Claim {
                    occurrence_ms,
                    next_ms,
                    status: if skip {
                        RunStatus::Skipped
                    } else {
                        RunStatus::Running
                    },
                }
            }
            Err(error) => Due::Disable(error),
        }
    }
}

/// A job's next occurrence after a time (`Ok(None)`: none), or why its
/// stored schedule cannot be read (the store then disables the job).
pub type NextOccurrence = Arc<dyn Fn(&StoredJob, i64) -> Result<Option<i64>> + Send + Sync>;

/// A change of a stored job, given it as it is now; its error is returned
/// by [`JobStore::edit_job`] and nothing is changed.
pub type JobEdit = Box<dyn FnOnce(StoredJob) -> Result<StoredJob> + Send>;

/// A delivery to queue: for a chat, or a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Idempotency key: a second delivery with it is not queued.
    pub key: String,
    /// The job, when it comes from one.
    pub job_id: Option<String>,
    /// The run whose reply it is (not for failure notices).
    pub run_id: Option<i64>,
    /// Where it goes.
    pub target: DeliveryTarget,
    /// The text.
    pub text: String,
}

/// What recording a run's end changes, decided by [`after_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunEffects {
    /// The run's status.
    pub status: RunStatus,
    /// The job's failed runs in a row now.
    pub failures: u32,
    /// Whether the job is disabled now.
    pub disable: bool,
    /// The delivery to queue, if any.
    pub delivery: Option<NewDelivery>,
}

/// The idempotency key part naming a target.
pub fn target_key(target: &DeliveryTarget) -> String {
    match target {
        DeliveryTarget::Chat { channel, target } => match &target.thread_id {
            Some(thread) => format!("{channel}:{}:{thread}", target.chat_id),
            None => format!("{channel}:{}", target.chat_id),
        },
        DeliveryTarget::Webhook { url } => format!("webhook:{url}"),
    }
}

/// What run `run_id` of `job` (for `occurrence_ms`) ending with `outcome`
/// changes: its job's failure count, whether the job is disabled now, and
/// the delivery of the reply, or of one notice at the
/// [`NOTICE_AFTER_FAILURES`]th failure in a row and one when disabled.
pub fn after_run(job: &Job, run_id: i64, occurrence_ms: i64, outcome: &RunOutcome) -> RunEffects {
    let (status, failures) = match outcome {
        RunOutcome::Ok { .. } => (RunStatus::Ok, 0),
        RunOutcome::Failed(_) => (RunStatus::Error, job.consecutive_failures + 1),
    };
    let disable = job.disable_after_failures > 0 && failures >= job.disable_after_failures;
    let delivery = job.deliver.as_ref().and_then(|target| match outcome {
        RunOutcome::Ok { reply, .. } => Some(NewDelivery {
            key: format!("job:{}:{occurrence_ms}:{}", job.id, target_key(target)),
            job_id: Some(job.id.clone()),
            run_id: Some(run_id),
            target: target.clone(),
            text: reply.clone(),
        }),
        RunOutcome::Failed(error) if failures == NOTICE_AFTER_FAILURES || disable => {
            let mut text = format!(
                "Scheduled job \u{201c}{}\u{201d} failed {failures} times in a row: {error}",
                job.name
            );
            if disable {
                text.push_str("\nIt is now disabled.");
            }
            Some(NewDelivery {
                key: format!("job:{}:failing:{run_id}", job.id),
                job_id: Some(job.id.clone()),
                run_id: None,
                target: target.clone(),
                text,
            })
        }
        RunOutcome::Failed(_) => None,
    });
    RunEffects {
        status,
        failures,
        disable,
        delivery,
    }
}

/// The session a run of `job` runs in: the job's named session, or one of
/// its own per run.
pub fn run_session(job: &Job, run_id: i64) -> String {
    match &job.session {
        crate::schedule::JobSession::Named { key } => key.clone(),
        crate::schedule::JobSession::Isolated => format!("cron:{}:{run_id}", job.id),
    }
}

/// How [`JobStore::finish`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Finished {
    /// The run was still the owner's and its end is recorded.
    pub recorded: bool,
    /// A delivery was queued.
    pub queued: bool,
    /// The job is disabled now (too many failures in a row).
    pub disabled: bool,
}

/// Jobs, runs and deliveries. A store shared by several processes (one
/// database, several agents) must make each method atomic on its own;
/// every scheduler of the store may call any of them at any time.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Store a new job, unless the store holds `max_jobs` already
    /// ([`Error::InvalidInput`](crate::Error::InvalidInput)).
    async fn insert_job(&self, job: &StoredJob, max_jobs: u64) -> Result<()>;

    /// Every job, soonest next run first (those without one last, then by
    /// creation).
    async fn jobs(&self) -> Result<Vec<Job>>;

    /// How many jobs were created from session `origin` (`None`: from none).
    async fn count_jobs_from(&self, origin: Option<&str>) -> Result<u64>;

    /// One job ([`Error::NotFound`](crate::Error::NotFound) if none).
    async fn job(&self, id: &str) -> Result<StoredJob>;

    /// Change job `id` by `edit`, atomically: no claim or other change of
    /// the job comes between reading and writing it. Answers the job as
    /// stored.
    async fn edit_job(&self, id: &str, edit: JobEdit) -> Result<Job>;

    /// Delete a job, its runs and its pending deliveries.
    async fn delete_job(&self, id: &str) -> Result<()>;

    /// A job's latest `limit` runs, newest first, with their deliveries'
    /// states.
    async fn runs(&self, id: &str, limit: u64) -> Result<Vec<JobRun>>;

    /// Ask for a run of job `id`; asking again before a scheduler claims it
    /// asks for the same run. Answers the time the run was first asked for.
    async fn request_run(&self, id: &str, now_ms: i64) -> Result<i64>;

    /// The earliest due job, requested run or lease to expire (Unix ms).
    async fn next_wake_ms(&self) -> Result<Option<i64>>;

    /// Claim what is due at `claim.now_ms` for `claim.owner`: running runs
    /// whose lease expired become `interrupted` and (first attempts of
    /// enabled `run_once` jobs) get one retry, requested runs start, and
    /// each due job's occurrence is claimed with its next one computed by
    /// `next`. An occurrence due longer ago than `claim.late_after_ms` of a
    /// `skip` job is recorded as skipped, not run. Each occurrence is
    /// claimed once in the store, by whichever scheduler comes first.
    async fn claim_due(&self, claim: &Claim, next: &NextOccurrence) -> Result<Vec<ClaimedRun>>;

    /// Extend the leases of `owner`'s running runs to `until_ms`.
    async fn renew(&self, owner: &str, until_ms: i64) -> Result<u64>;

    /// Mark `owner`'s running runs interrupted (a clean shutdown).
    async fn interrupt_owned(&self, owner: &str, now_ms: i64) -> Result<u64>;

    /// Record how `owner`'s run ended and apply [`after_run`] to its job,
    /// in one transaction; nothing is recorded when the run is no longer
    /// `owner`'s running run.
    async fn finish(
        &self,
        run_id: i64,
        owner: &str,
        outcome: &RunOutcome,
        now_ms: i64,
    ) -> Result<Finished>;

    /// Queue a delivery; `false` when one with its key exists.
    async fn enqueue(&self, delivery: &NewDelivery, now_ms: i64) -> Result<bool>;

    /// Chat deliveries pending for `channels` (every chat channel when
    /// empty) and due at `now_ms`, oldest first.
    async fn pending(
        &self,
        channels: &[String],
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<Delivery>>;

    /// When the earliest webhook retry is due (Unix ms), if one waits.
    async fn next_webhook_retry_ms(&self) -> Result<Option<i64>>;

    /// Record what a gateway did with a chat delivery
    /// ([`Error::InvalidInput`](crate::Error::InvalidInput) for an unknown key).
    async fn report(&self, key: &str, outcome: &DeliveryOutcome, now_ms: i64) -> Result<()>;

    /// Take up to `limit` webhook deliveries due, marking them `sending`.
    async fn take_webhooks(&self, limit: usize, now_ms: i64) -> Result<Vec<WebhookDelivery>>;

    /// Record a webhook's result: sent, failed for good, or (`retry_at`)
    /// to be tried again then, unless it was tried `max_attempts` times.
    async fn webhook_done(
        &self,
        key: &str,
        result: std::result::Result<(), String>,
        retry_at: Option<i64>,
        max_attempts: u32,
        now_ms: i64,
    ) -> Result<()>;

    /// Webhook deliveries `sending` since before `now_ms - older_than_ms`
    /// become `failed`, not resent.
    async fn abandon_stale_sends(&self, older_than_ms: i64, now_ms: i64) -> Result<u64>;

    /// Claim the heartbeat's occurrence `at_ms` for `owner`; `false` when
    /// another scheduler of the store did.
    async fn claim_heartbeat(&self, at_ms: i64, owner: &str, now_ms: i64) -> Result<bool>;
}

impl std::fmt::Debug for dyn JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn JobStore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{JobSession, Schedule};

    fn job(missed: MissedPolicy, failures: u32) -> Job {
        Job {
            id: "j".into(),
            name: "tick".into(),
            schedule: Schedule::Every { every: "1m".into() },
            message: "Say tick.".into(),
            session: JobSession::Isolated,
            deliver: Some(DeliveryTarget::Webhook {
                url: "https://hooks.example/".into(),
            }),
            enabled: true,
            missed,
            disable_after_failures: 4,
            origin: None,
            consecutive_failures: failures,
            next_run_ms: Some(60_000),
            last_status: None,
            last_run_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_claim_skips_only_what_was_missed_under_skip() {
        let next: NextOccurrence = Arc::new(|_, after| Ok(Some(after + 60_000)));
        let claim = |now_ms| Claim {
            owner: "me".into(),
            now_ms,
            lease_ms: 10_000,
            late_after_ms: 60_000,
            limit: 10,
        };
        let status = |missed, now| match claim(now).decide(
            &StoredJob {
                job: job(missed, 0),
                anchor_ms: 0,
            },
            &next,
        ) {
            Due::Claim {
                status, next_ms, ..
            } => (status, next_ms),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            status(MissedPolicy::Skip, 61_000),
            (RunStatus::Running, Some(121_000))
        );
        assert_eq!(
            status(MissedPolicy::Skip, 200_000),
            (RunStatus::Skipped, Some(260_000))
        );
        assert_eq!(status(MissedPolicy::RunOnce, 200_000).0, RunStatus::Running);
        let broken: NextOccurrence = Arc::new(|_, _| Err(crate::Error::InvalidInput("x".into())));
        let stored = StoredJob {
            job: job(MissedPolicy::RunOnce, 0),
            anchor_ms: 0,
        };
        assert!(matches!(
            claim(61_000).decide(&stored, &broken),
            Due::Disable(_)
        ));
    }

    #[test]
    fn failures_notify_at_the_third_and_when_disabled() {
        let failed = RunOutcome::Failed("down".into());
        let notices: Vec<bool> = (0..4)
            .map(|before| {
                after_run(&job(MissedPolicy::RunOnce, before), 9, 60_000, &failed)
                    .delivery
                    .is_some()
            })
            .collect();
        assert_eq!(notices, [false, false, true, true]);
        let last = after_run(&job(MissedPolicy::RunOnce, 3), 9, 60_000, &failed);
        assert!(last.disable);
        assert!(last.delivery.unwrap().text.ends_with("It is now disabled."));
        let ok = RunOutcome::Ok {
            reply: "tick".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
        };
        let sent = after_run(&job(MissedPolicy::RunOnce, 3), 9, 60_000, &ok);
        assert_eq!((sent.failures, sent.disable), (0, false));
        let delivery = sent.delivery.unwrap();
        assert_eq!(delivery.key, "job:j:60000:webhook:https://hooks.example/");
        assert_eq!(delivery.run_id, Some(9));
    }
}

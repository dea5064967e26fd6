//! Scheduled work on the wire: jobs, their runs, and the deliveries a
//! gateway sends to chats. The same JSON on the agent socket, under the
//! gateway's `/api/cron` and in SDKs; the scheduler itself lives in
//! `ocg-agent-lib`, over a [`JobStore`].

use serde::{Deserialize, Serialize};

use crate::ChatTarget;
pub use crate::job_store::{
    Claim, ClaimedRun, Due, Finished, JobEdit, JobStore, NOTICE_AFTER_FAILURES, NewDelivery,
    NextOccurrence, RunEffects, RunOutcome, StoredJob, WebhookDelivery, after_run, run_session,
    target_key,
};

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Once, at `at`: RFC 3339 (`2026-12-24T09:00:00+01:00`), or relative
    /// (`in 10m`, `in 1h30m`) when creating; stored as an RFC 3339 instant.
    At {
        /// The time.
        at: String,
    },
    /// Every interval (`30s`, `10m`, `1h`, `1d`; at least one second),
    /// counted from the job's creation.
    Every {
        /// The interval.
        every: String,
    },
    /// A 5-field cron expression (`minute hour day-of-month month
    /// day-of-week`) in an IANA time zone.
    Cron {
        /// The expression, such as `0 8 * * 1-5`.
        expr: String,
        /// IANA zone (`Europe/Berlin`); the machine's zone when absent at
        /// creation, then stored explicitly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
}

/// In which session a job's turn runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSession {
    /// A fresh session for each run (`cron:<job>:<run>`).
    #[default]
    Isolated,
    /// One named session (a chat's own, `telegram:42`, or any other key);
    /// the turns are stored there like any other, so a job created from a
    /// web session runs in it and its replies appear there.
    Named {
        /// The session key.
        key: String,
    },
}

/// Where a run's reply is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeliveryTarget {
    /// A chat of a gateway channel (`telegram`, …), sent by the gateway.
    Chat {
        /// The channel's name.
        channel: String,
        /// The chat (and thread).
        #[serde(flatten)]
        target: ChatTarget,
    },
    /// An HTTP(S) URL, POSTed a JSON body by the agent with an
    /// `Idempotency-Key` header; refused when it resolves to a private
    /// address, like `web_fetch`.
    Webhook {
        /// The URL.
        url: String,
    },
}

/// What happens to occurrences that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Run once at start for all the occurrences missed (and retry a run
    /// interrupted by a crash once).
    #[default]
    RunOnce,
    /// Record them as skipped and wait for the next one.
    Skip,
}

impl MissedPolicy {
    /// Its name on the wire and in stores (`run_once`, `skip`).
    pub fn as_str(self) -> &'static str {
        match self {
            MissedPolicy::RunOnce => "run_once",
            MissedPolicy::Skip => "skip",
        }
    }

    /// The policy named `name`; `run_once`, the default, for any other.
    pub fn parse(name: &str) -> Self {
        if name == "skip" {
            MissedPolicy::Skip
        } else {
            MissedPolicy::RunOnce
        }
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// A name to show; the message's start when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it runs.
    pub schedule: Schedule,
    /// The prompt of the turn each run makes.
    pub message: String,
    /// Where the turn runs.
    #[serde(default)]
    pub session: JobSession,
    /// Where the reply goes; `None` keeps it in the session and the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<DeliveryTarget>,
    /// Whether it runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// After downtime.
    #[serde(default)]
    pub missed: MissedPolicy,
    /// Disable the job after this many failed runs in a row (0: never;
    /// default 5).
    #[serde(default = "five")]
    pub disable_after_failures: u32,
    /// The session it was created from (by the `schedule` tool), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

fn yes() -> bool {
    true
}

fn five() -> u32 {
    5
}

/// Changes to a job; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPatch {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New schedule (the next run is computed anew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// New prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pause (`false`) or resume (`true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// New missed-run policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<MissedPolicy>,
}

/// How a run ended, or that it still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The turn is running.
    Running,
    /// The turn answered.
    Ok,
    /// The turn failed.
    Error,
    /// The scheduler running it stopped (crash, kill) before it ended.
    Interrupted,
    /// Missed during downtime and not run (policy `skip`).
    Skipped,
}

impl RunStatus {
    /// Its name on the wire and in stores (`running`, `ok`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }

    /// The status named `name`; `interrupted` for any other (a run whose
    /// end is not known).
    pub fn parse(name: &str) -> Self {
        match name {
            "running" => RunStatus::Running,
            "ok" => RunStatus::Ok,
            "error" => RunStatus::Error,
            "skipped" => RunStatus::Skipped,
            _ => RunStatus::Interrupted,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it runs (an `at` is absolute, a cron's zone explicit).
    pub schedule: Schedule,
    /// The prompt.
    pub message: String,
    /// Where the turn runs.
    pub session: JobSession,
    /// Where the reply goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<DeliveryTarget>,
    /// Whether it runs.
    pub enabled: bool,
    /// After downtime.
    pub missed: MissedPolicy,
    /// Auto-disable threshold (0: never).
    pub disable_after_failures: u32,
    /// The session it was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// The next occurrence (Unix ms); `None` when there is none (a one-shot
    /// done, or disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_ms: Option<i64>,
    /// The latest run's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<RunStatus>,
    /// When the latest run started (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_ms: Option<i64>,
    /// Creation (Unix ms).
    pub created_at_ms: i64,
    /// Last change (Unix ms).
    pub updated_at_ms: i64,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// Its id.
    pub id: i64,
    /// The job.
    pub job_id: String,
    /// The occurrence it serves (Unix ms): the scheduled time, or the time
    /// a run was asked for.
    pub occurrence_ms: i64,
    /// 1, or 2 for the retry of an interrupted run.
    pub attempt: u32,
    /// `schedule`, `manual` (run now) or `retry`.
    pub trigger: String,
    /// Status.
    pub status: RunStatus,
    /// The session the turn ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Start (Unix ms).
    pub started_at_ms: i64,
    /// End (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    /// The reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Prompt tokens the model reported.
    pub prompt_tokens: u32,
    /// Completion tokens the model reported.
    pub completion_tokens: u32,
    /// Its reply's delivery: `pending`, `sending`, `sent` or `failed: <why>`;
    /// absent when the job delivers nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

/// A message the agent wants a gateway channel to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Idempotency key (`job:<id>:<occurrence>:<target>`, …): a delivery
    /// with a key already sent is never sent again.
    pub key: String,
    /// The channel (`telegram`, …).
    pub channel: String,
    /// The chat.
    pub target: ChatTarget,
    /// The text (Markdown).
    pub text: String,
    /// When it was queued (Unix ms).
    pub created_at_ms: i64,
}

/// What a gateway reports of a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Sent (or, after a crash while sending, possibly sent: never resent).
    Sent,
    /// Refused for good (blocked bot, unknown chat, no such channel).
    Failed {
        /// Why.
        error: String,
    },
}

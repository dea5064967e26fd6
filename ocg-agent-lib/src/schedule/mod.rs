//! Scheduled work: jobs that run agent turns at a time, every interval or
//! on a cron expression, exactly once per occurrence, and deliver the reply.
//!
//! - [`ScheduleStore`]: the rules of jobs, runs and deliveries over any
//!   [`JobStore`](ocg_core::JobStore): [`SqliteJobStore`] in the agent's
//!   database by default, where every decision about what runs is one
//!   write transaction.
//! - [`Scheduler`]: claims due occurrences and runs each as a turn of any
//!   [`Agent`](ocg_core::Agent), with a lease it renews; webhooks are POSTed
//!   from here, chat deliveries are handed to the gateway
//!   ([`ScheduleStore::wait_pending`], [`ScheduleStore::report`]).
//! - [`spawn_heartbeat`]: the optional periodic check-in.
//! - [`Clock`]: the time, injected ([`ManualClock`] in tests).
//!
//! `docs/scheduling.md` explains the guarantees and their tests.

mod clock;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod contract;
mod heartbeat;
mod plan;
mod scheduler;
mod sqlite;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use heartbeat::{HEARTBEAT_OK, HeartbeatConfig, beat, heartbeat_message, spawn_heartbeat};
pub use ocg_core::schedule::{ClaimedRun, NOTICE_AFTER_FAILURES, RunOutcome, WebhookDelivery};
pub use plan::{MIN_EVERY_MS, Plan, parse_at_ms, parse_cron, parse_duration_ms, rfc3339, zone};
pub use scheduler::{Scheduler, SchedulerConfig, WebhookError, run_prompt};
pub use sqlite::SqliteJobStore;
pub use store::{
    MAX_JOBS, MAX_MESSAGE_CHARS, ScheduleStore, WEBHOOK_ATTEMPTS, chat_of_session, check_target,
};

#[cfg(test)]
mod tests;

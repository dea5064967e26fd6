//! Scheduled work: jobs that run agent turns at a time, every interval or
//! on a cron expression, exactly once per occurrence, and deliver the reply.
//!
//! - [`ScheduleStore`]: jobs, runs and deliveries in the agent's SQLite
//!   database; every decision about what runs is one write transaction.
//! - [`Scheduler`]: claims due occurrences and runs each as a turn of any
//!   [`Agent`](ocg_core::Agent), with a lease it renews; webhooks are POSTed
//!   from here, chat deliveries are handed to the gateway
//!   ([`ScheduleStore::wait_pending`], [`ScheduleStore::report`]).
//! - [`spawn_heartbeat`]: the optional periodic check-in.
//! - [`Clock`]: the time, injected ([`ManualClock`] in tests).
//!
//! `docs/scheduling.md` explains the guarantees and their tests.

mod clock;
mod heartbeat;
mod plan;
mod scheduler;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use heartbeat::{HEARTBEAT_OK, HeartbeatConfig, beat, heartbeat_message, spawn_heartbeat};
pub use plan::{MIN_EVERY_MS, Plan, parse_at_ms, parse_cron, parse_duration_ms, rfc3339, zone};
pub use scheduler::{Scheduler, SchedulerConfig, WebhookError, run_prompt};
pub use store::{
    ClaimedRun, MAX_JOBS, MAX_MESSAGE_CHARS, NOTICE_AFTER_FAILURES, RunOutcome, ScheduleStore,
    WEBHOOK_ATTEMPTS, WebhookDelivery, chat_of_session, check_target,
};

#[cfg(test)]
mod tests;

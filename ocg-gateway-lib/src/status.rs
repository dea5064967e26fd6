//! [`StatusBoard`]: the counters behind every channel's
//! [`Channel::status`](ocg_core::Channel::status), kept the same way by all.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ocg_core::{ChannelState, ChannelStatus};

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A channel's state and counters (thread-safe; cheap to update).
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: Mutex<ChannelStatus>,
}

impl StatusBoard {
    /// A board for channel `name` receiving in `mode` (`long_polling`, …).
    pub fn new(name: &str, mode: &str) -> Self {
        StatusBoard {
            inner: Mutex::new(ChannelStatus {
                name: name.to_owned(),
                mode: Some(mode.to_owned()),
                ..ChannelStatus::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChannelStatus> {
        crate::lock(&self.inner)
    }

    /// Set the connection state.
    pub fn set_state(&self, state: ChannelState) {
        self.lock().state = state;
    }

    /// Count an error (retried) and show it; `error` must hold no secret.
    pub fn failed(&self, error: &str) {
        let mut status = self.lock();
        status.errors += 1;
        status.last_error = Some(error.to_owned());
        status.last_error_at_ms = Some(now_ms());
    }

    /// Count `count` messages received now.
    pub fn received(&self, count: usize) {
        if count == 0 {
            return;
        }
        let mut status = self.lock();
        status.received += count as u64;
        status.last_message_at_ms = Some(now_ms());
    }

    /// Count one reply sent.
    pub fn sent(&self) {
        self.lock().sent += 1;
    }

    /// The status, with `pending` messages waiting for an answer.
    pub fn snapshot(&self, pending: usize) -> ChannelStatus {
        let mut status = self.lock().clone();
        status.pending = pending as u64;
        status
    }
}

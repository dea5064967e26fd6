//! The reconnect loop the connected channels (IRC, Matrix, email) share:
//! run a connection until it ends, show why on the status board, wait with
//! backoff, run the next one; stop on a fatal error (refused credentials).

use std::time::Duration;

use ocg_core::{ChannelState, Error, Result};

use crate::status::StatusBoard;

/// How one connection ended.
pub(crate) enum Ended {
    /// Do not retry: the server refused the credentials, or the settings.
    Fatal(Error),
    /// Retry, after the server's wait when it gave one, else the backoff.
    Lost { why: String, wait: Option<Duration> },
}

impl Ended {
    /// Lost for `why`, to be retried after the backoff.
    pub(crate) fn lost(why: impl Into<String>) -> Ended {
        Ended::Lost {
            why: why.into(),
            wait: None,
        }
    }
}

/// The backoff between a channel's connections.
#[derive(Debug)]
pub(crate) struct Reconnect {
    channel: &'static str,
    min: Duration,
    max: Duration,
    backoff: Duration,
}

impl Reconnect {
    /// Waits from `min`, doubling up to `max`, for `channel`.
    pub(crate) fn new(channel: &'static str, (min, max): (Duration, Duration)) -> Self {
        Reconnect {
            channel,
            min,
            max,
            backoff: min,
        }
    }

    /// A connection ended: show why on `board`, then wait before the next
    /// one, or return the fatal error. A `healthy` connection (one that
    /// worked for a while) resets the backoff; otherwise each retry waits
    /// twice as long.
    pub(crate) async fn after(
        &mut self,
        board: &StatusBoard,
        ended: Ended,
        healthy: bool,
    ) -> Result<()> {
        let channel = self.channel;
        board.set_state(ChannelState::Failing);
        let wait = match ended {
            Ended::Fatal(error) => {
                board.failed(&error.to_string());
                tracing::error!(channel, "{error}");
                board.set_state(ChannelState::Stopped);
                return Err(error);
            }
            Ended::Lost { why, wait } => {
                tracing::warn!(channel, "connection lost, reconnecting: {why}");
                board.failed(&why);
                wait
            }
        };
        if healthy {
            self.backoff = self.min;
        }
        tokio::time::sleep(wait.unwrap_or(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(self.max);
        board.set_state(ChannelState::Connecting);
        Ok(())
    }
}

/// Sends of one message (or piece of one) before it is given up.
pub(crate) const SEND_ATTEMPTS: u32 = 6;

/// A platform's refusal or silence, as far as retrying goes.
pub(crate) trait Transient: std::fmt::Display {
    /// Worth sending again (no answer, rate limited, a server error).
    fn transient(&self) -> bool;
    /// The wait the platform asked for.
    fn wait(&self) -> Option<Duration>;
}

/// Call `send` until it succeeds, fails for good, or has failed
/// [`SEND_ATTEMPTS`] times; between tries the platform's wait, else a
/// backoff from `min` doubling up to `max`. `retrying` hears each failure
/// that is retried.
pub(crate) async fn send_retrying<
    T,
    E: Transient,
    F: Future<Output = std::result::Result<T, E>>,
>(
    (min, max): (Duration, Duration),
    mut send: impl FnMut() -> F,
    mut retrying: impl FnMut(&E),
) -> std::result::Result<T, E> {
    let mut backoff = min;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Err(e) if e.transient() && attempt < SEND_ATTEMPTS => {
                retrying(&e);
                tokio::time::sleep(e.wait().unwrap_or(backoff)).await;
                backoff = (backoff * 2).min(max);
            }
            other => return other,
        }
    }
}

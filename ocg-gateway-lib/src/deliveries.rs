//! Deliveries: what the agent's scheduler wants sent to chats, sent by the
//! gateway, which owns the channels.
//!
//! [`DeliveryPump`] long-polls the agent ([`Agent::deliveries_pending`]) for
//! the channels it has, sends each delivery through its [`Channel`] and
//! reports the outcome ([`Agent::delivery_report`]). Each delivery carries
//! an idempotency key, and a [`DeliveryJournal`](crate::journal::DeliveryJournal) on disk records a key
//! *before* the send and again after it:
//!
//! - a crash before the send leaves no record: the delivery is still
//!   pending at the agent and is sent after the restart;
//! - a crash after the send but before the report leaves the record: the
//!   agent hands the delivery out again and the pump reports it sent
//!   without sending it twice (at most once is the promise; a send cut off
//!   mid-request may or may not have arrived and is not repeated);
//! - a send the platform refused without receiving it (network down,
//!   Telegram unreachable) is marked not sent and retried.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ocg_core::schedule::{Delivery, DeliveryOutcome};
use ocg_core::{Agent, Channel, Error, OutgoingMessage, TextFormat};

use crate::journal::DeliveryJournal;

/// How long one poll of the agent waits for a delivery.
const POLL_WAIT_MS: u64 = 25_000;

/// Sends the agent's chat deliveries through the gateway's channels.
pub struct DeliveryPump {
    agent: Arc<dyn Agent>,
    channels: HashMap<String, Arc<dyn Channel>>,
    journal: DeliveryJournal,
}

impl std::fmt::Debug for DeliveryPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryPump")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What one delivery attempt came to.
enum Sent {
    /// Report this outcome.
    Report(DeliveryOutcome),
    /// Not sent (the platform is unreachable): leave it pending, wait.
    Later,
}

impl DeliveryPump {
    /// A pump for `channels`, recording in the journal at `journal`.
    pub fn new(
        agent: Arc<dyn Agent>,
        channels: Vec<Arc<dyn Channel>>,
        journal: &Path,
    ) -> std::io::Result<Self> {
        Ok(DeliveryPump {
            agent,
            channels: channels
                .into_iter()
                .map(|c| (c.name().to_owned(), c))
                .collect(),
            journal: DeliveryJournal::open(journal)?,
        })
    }

    /// Deliver until the future is dropped (or at once, when the agent
    /// offers no scheduling). Every chat delivery is taken, also those for
    /// channels this gateway does not run: they are reported failed, so a
    /// lost target shows in the job's runs instead of waiting forever.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.agent.deliveries_pending(&[], POLL_WAIT_MS).await {
                Ok(batch) => {
                    backoff = Duration::from_secs(1);
                    let mut wait = false;
                    for delivery in batch {
                        wait |= !self.deliver(delivery).await;
                    }
                    if wait {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
                Err(Error::Unsupported(_)) => {
                    tracing::info!("the agent offers no scheduling; no deliveries to send");
                    return;
                }
                Err(error) => {
                    tracing::debug!("deliveries not fetched, retrying: {error}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Send one delivery; `false` when it must wait (not sent now).
    async fn deliver(&self, delivery: Delivery) -> bool {
        let sent = self.send(&delivery).await;
        let outcome = match sent {
            Sent::Later => return false,
            Sent::Report(outcome) => outcome,
        };
        if let Err(error) = self.agent.delivery_report(&delivery.key, outcome).await {
            // The journal has the key: the next poll reports it again.
            tracing::warn!(key = %delivery.key, "delivery outcome not reported yet: {error}");
            return false;
        }
        true
    }

    async fn send(&self, delivery: &Delivery) -> Sent {
        let Some(channel) = self.channels.get(&delivery.channel) else {
            return Sent::Report(DeliveryOutcome::Failed {
                error: format!(
                    "the gateway runs no {:?} channel (is it configured?)",
                    delivery.channel
                ),
            });
        };
        if self.journal.started(&delivery.key) {
            tracing::info!(key = %delivery.key, "delivery already sent (or cut off while sending); not repeated");
            return Sent::Report(DeliveryOutcome::Sent);
        }
        if let Err(error) = self.journal.begin(&delivery.key) {
            tracing::error!(key = %delivery.key, "delivery journal not writable, not sending: {error}");
            return Sent::Later;
        }
        let message = OutgoingMessage {
            target: delivery.target.clone(),
            text: delivery.text.clone(),
            format: TextFormat::Markdown,
            reply_to: None,
        };
        match channel.send(message).await {
            Ok(_) => {
                tracing::info!(key = %delivery.key, channel = %delivery.channel, chat = %delivery.target.chat_id, "delivered");
                Sent::Report(DeliveryOutcome::Sent)
            }
            Err(error @ Error::Unavailable { .. }) => {
                tracing::warn!(key = %delivery.key, "delivery not sent yet, retrying: {error}");
                match self.journal.unsent(&delivery.key) {
                    Ok(()) => Sent::Later,
                    // Without the record it would count as sent: say so.
                    Err(io) => Sent::Report(DeliveryOutcome::Failed {
                        error: format!("{error}; journal: {io}"),
                    }),
                }
            }
            Err(error @ Error::Timeout(_)) => Sent::Report(DeliveryOutcome::Failed {
                error: format!("{error} (not repeated: it may have arrived)"),
            }),
            Err(error) => {
                tracing::error!(key = %delivery.key, "delivery refused by the platform: {error}");
                Sent::Report(DeliveryOutcome::Failed {
                    error: error.to_string(),
                })
            }
        }
    }
}

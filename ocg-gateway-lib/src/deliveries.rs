//! Deliveries: what the agent's scheduler wants sent to chats, sent by the
//! gateway, which owns the channels.
//!
//! [`DeliveryPump`] long-polls the agent ([`Agent::deliveries_pending`]) for
//! the channels it has, sends each delivery through its [`Channel`] and
//! reports the outcome ([`Agent::delivery_report`]). Each delivery carries
//! an idempotency key, and a [`DeliveryJournal`] on disk records a key
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocg_core::schedule::{Delivery, DeliveryOutcome};
use ocg_core::{Agent, Channel, Error, OutgoingMessage, TextFormat};
use serde_json::{Value, json};

/// Keys remembered (and kept through a compaction).
const REMEMBERED: usize = 10_000;
/// Lines appended before the file is compacted.
const COMPACT_AFTER: usize = 20_000;
/// How long one poll of the agent waits for a delivery.
const POLL_WAIT_MS: u64 = 25_000;

#[derive(Debug)]
struct JournalState {
    file: File,
    keys: HashSet<String>,
    order: VecDeque<String>,
    lines: usize,
}

/// The gateway's record of delivery keys it started sending: one JSON line
/// per event (`{"begin":key}`, `{"unsent":key}`), mode 0600, each synced
/// before the call returns.
#[derive(Debug)]
pub struct DeliveryJournal {
    path: PathBuf,
    state: Mutex<JournalState>,
    remembered: usize,
    compact_after: usize,
}

impl DeliveryJournal {
    /// Open (or create) the journal at `path`, replaying it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, REMEMBERED, COMPACT_AFTER)
    }

    fn open_with(path: &Path, remembered: usize, compact_after: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut keys = HashSet::new();
        let mut order = VecDeque::new();
        let mut lines = 0;
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let line = line?;
                lines += 1;
                // A torn last line (a crash mid-write) is ignored.
                let Ok(record) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(key) = record["begin"].as_str() {
                    if keys.insert(key.to_owned()) {
                        order.push_back(key.to_owned());
                    }
                } else if let Some(key) = record["unsent"].as_str() {
                    keys.remove(key);
                }
            }
        }
        order.retain(|k| keys.contains(k));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let journal = DeliveryJournal {
            path: path.to_owned(),
            state: Mutex::new(JournalState {
                file,
                keys,
                order,
                lines,
            }),
            remembered,
            compact_after,
        };
        Ok(journal)
    }

    /// Whether sending `key` was ever started (and not known unsent).
    pub fn started(&self, key: &str) -> bool {
        self.lock().keys.contains(key)
    }

    /// Record that sending `key` starts; on disk when this returns.
    pub fn begin(&self, key: &str) -> std::io::Result<()> {
        let mut state = self.lock();
        append(&mut state.file, &json!({ "begin": key }))?;
        state.lines += 1;
        if state.keys.insert(key.to_owned()) {
            state.order.push_back(key.to_owned());
        }
        while state.order.len() > self.remembered {
            if let Some(old) = state.order.pop_front() {
                state.keys.remove(&old);
            }
        }
        if state.lines > self.compact_after {
            self.compact(&mut state)?;
        }
        Ok(())
    }

    /// Record that `key` was not sent after all (to be sent again).
    pub fn unsent(&self, key: &str) -> std::io::Result<()> {
        let mut state = self.lock();
        append(&mut state.file, &json!({ "unsent": key }))?;
        state.lines += 1;
        state.keys.remove(key);
        state.order.retain(|k| k != key);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrite the file with the remembered keys only (temporary file,
    /// fsync, rename, fsync of the directory).
    fn compact(&self, state: &mut JournalState) -> std::io::Result<()> {
        let tmp = self.path.with_extension("compacting");
        {
            let mut out = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            for key in &state.order {
                writeln!(out, "{}", json!({ "begin": key }))?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        state.file = OpenOptions::new().append(true).open(&self.path)?;
        state.lines = state.order.len();
        Ok(())
    }
}

fn append(file: &mut File, record: &Value) -> std::io::Result<()> {
    file.write_all(format!("{record}\n").as_bytes())?;
    file.sync_data()
}

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
            .field("journal", &self.journal.path)
            .finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_remembers_started_keys_across_reopening_and_forgets_unsent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/deliveries.journal");
        {
            let journal = DeliveryJournal::open(&path).unwrap();
            journal.begin("job:a:1:telegram:1").unwrap();
            journal.begin("job:b:1:telegram:1").unwrap();
            journal.unsent("job:b:1:telegram:1").unwrap();
        }
        // A torn last line, as a crash mid-write leaves it.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"begin\":\"job:c").unwrap();
        drop(file);
        let journal = DeliveryJournal::open(&path).unwrap();
        assert!(journal.started("job:a:1:telegram:1"));
        assert!(!journal.started("job:b:1:telegram:1"));
        assert!(!journal.started("job:c"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn compaction_keeps_the_remembered_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deliveries.journal");
        let journal = DeliveryJournal::open_with(&path, 50, 200).unwrap();
        for i in 0..210 {
            journal.begin(&format!("k{i}")).unwrap();
        }
        drop(journal);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 60, "{lines} lines after compaction");
        let journal = DeliveryJournal::open(&path).unwrap();
        assert!(journal.started("k209"));
        assert!(journal.started("k160"));
        assert!(!journal.started("k0"));
    }
}

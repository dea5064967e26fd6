//! Hands a channel's journaled messages to its handler: one queue and task
//! per chat, so a chat is answered in order while chats run in parallel,
//! and each message is marked done in the [`InboundJournal`] once the
//! handler (which sends the reply) returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ocg_core::{InboundHandler, IncomingMessage};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::journal::InboundJournal;
use crate::lock;

/// What a dispatcher does with a failure of its own (the journal could not
/// record "done"): the channel counts and shows it.
pub type ErrorReport = Arc<dyn Fn(&str) + Send + Sync>;

/// Per-chat queues over one journal (see the module docs).
pub struct Dispatcher {
    channel: String,
    handler: Arc<dyn InboundHandler>,
    journal: Arc<InboundJournal>,
    report: ErrorReport,
    workers: HashMap<String, mpsc::UnboundedSender<(String, IncomingMessage)>>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("channel", &self.channel)
            .field("chats", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for `channel` handing messages to `handler`.
    pub fn new(
        channel: &str,
        handler: Arc<dyn InboundHandler>,
        journal: Arc<InboundJournal>,
        report: ErrorReport,
    ) -> Self {
        Dispatcher {
            channel: channel.to_owned(),
            handler,
            journal,
            report,
            workers: HashMap::new(),
            in_flight: Arc::default(),
            tasks: JoinSet::new(),
        }
    }

    /// Queue the journaled message `key` in its chat. A message not pending
    /// (already answered) or already queued is left out: a webhook racing a
    /// restart's replay can bring one twice.
    pub fn dispatch(&mut self, key: String, message: IncomingMessage) {
        if !self.journal.is_pending(&key) || !lock(&self.in_flight).insert(key.clone()) {
            return;
        }
        let chat = message.session_key();
        let queue = self.workers.entry(chat).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(String, IncomingMessage)>();
            let handler = self.handler.clone();
            let journal = self.journal.clone();
            let in_flight = self.in_flight.clone();
            let report = self.report.clone();
            self.tasks.spawn(async move {
                while let Some((key, message)) = rx.recv().await {
                    handler.handle(message).await;
                    let journal = journal.clone();
                    let done_key = key.clone();
                    match tokio::task::spawn_blocking(move || journal.done(&done_key)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => report(&format!("journal: {e}")),
                        Err(e) => report(&format!("journal: {e}")),
                    }
                    lock(&in_flight).remove(&key);
                }
            });
            tx
        });
        // The worker only ends when its sender is dropped, so this succeeds.
        let _ = queue.send((key, message));
    }

    /// Collect finished worker tasks (a panicking handler ends its worker;
    /// the chat gets a new one with its next message).
    pub fn reap(&mut self) {
        while let Some(result) = self.tasks.try_join_next() {
            if let Err(e) = result
                && e.is_panic()
            {
                tracing::error!(channel = %self.channel, "a chat worker panicked");
            }
        }
        self.workers.retain(|_, tx| !tx.is_closed());
    }
}

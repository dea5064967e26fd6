//! Hands a channel's journaled messages to its handler: one queue and task
//! per chat, so a chat is answered in order while chats run in parallel,
//! and each message is marked done in the [`InboundJournal`] once the
//! handler (which sends the reply) returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ocg_core::{InboundHandler, IncomingMessage};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::journal::InboundJournal;
use crate::lock;
use crate::status::StatusBoard;

/// Per-chat queues over one journal (see the module docs).
pub struct Dispatcher {
    channel: String,
    handler: Arc<dyn InboundHandler>,
    journal: Arc<InboundJournal>,
    board: Arc<StatusBoard>,
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
    /// A dispatcher for `channel` handing messages to `handler`; its own
    /// failures (the journal could not record "done") are logged and shown
    /// on the channel's `board`.
    pub fn new(
        channel: &str,
        handler: Arc<dyn InboundHandler>,
        journal: Arc<InboundJournal>,
        board: Arc<StatusBoard>,
    ) -> Self {
        Dispatcher {
            channel: channel.to_owned(),
            handler,
            journal,
            board,
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
            let (board, channel) = (self.board.clone(), self.channel.clone());
            self.tasks.spawn(async move {
                while let Some((key, message)) = rx.recv().await {
                    handler.handle(message).await;
                    mark_done(&journal, &key, &board, &channel).await;
                    lock(&in_flight).remove(&key);
                }
            });
            tx
        });
        // The worker only ends when its sender is dropped, so this succeeds.
        let _ = queue.send((key, message));
    }

    /// Hand out again what the journal holds unanswered from before a
    /// restart, in arrival order. `answerable` turns a record back into its
    /// message, or says `None` when it is not to be answered any more (its
    /// sender was removed from the allow-list since); those are marked done.
    pub async fn replay(&mut self, answerable: impl Fn(&Value) -> Option<IncomingMessage>) {
        let pending = self.journal.pending();
        if !pending.is_empty() {
            tracing::info!(
                channel = %self.channel,
                count = pending.len(),
                "answering messages received before the restart"
            );
        }
        for (key, record) in pending {
            match answerable(&record) {
                Some(message) => self.dispatch(key, message),
                None => mark_done(&self.journal, &key, &self.board, &self.channel).await,
            }
        }
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

/// Record that `key` was answered; a failure is logged and shown.
async fn mark_done(journal: &Arc<InboundJournal>, key: &str, board: &StatusBoard, channel: &str) {
    let (journal, done) = (journal.clone(), key.to_owned());
    let error = match tokio::task::spawn_blocking(move || journal.done(&done)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(channel, "journal: {error}");
    board.failed(&format!("journal: {error}"));
}

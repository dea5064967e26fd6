use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use async_trait::async_trait;

use super::agent::lock;
use crate::{
    Channel, ChannelState, ChannelStatus, ChatTarget, Error, InboundHandler, IncomingMessage,
    OutgoingMessage, Result, SentMessage,
};

#[derive(Debug, Default)]
struct Inbox {
    queue: VecDeque<IncomingMessage>,
    waker: Option<Waker>,
    running: bool,
}

/// A [`Channel`] that records what is sent and delivers injected messages.
///
/// [`inject`](RecordingChannel::inject) queues an incoming message; a running
/// [`run`](Channel::run) hands it to its handler. Sends, edits and typing
/// notices are recorded in order.
#[derive(Debug)]
pub struct RecordingChannel {
    name: String,
    inbox: Mutex<Inbox>,
    sent: Mutex<Vec<OutgoingMessage>>,
    typing: Mutex<Vec<ChatTarget>>,
    edits: Mutex<Vec<(String, String)>>,
}

impl RecordingChannel {
    /// A channel called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        RecordingChannel {
            name: name.into(),
            inbox: Mutex::default(),
            sent: Mutex::default(),
            typing: Mutex::default(),
            edits: Mutex::default(),
        }
    }

    /// Queue an incoming message for the running handler.
    pub fn inject(&self, message: IncomingMessage) {
        let mut inbox = lock(&self.inbox);
        inbox.queue.push_back(message);
        if let Some(waker) = inbox.waker.take() {
            waker.wake();
        }
    }

    /// Messages sent so far.
    pub fn sent(&self) -> Vec<OutgoingMessage> {
        lock(&self.sent).clone()
    }

    /// Targets that were shown a typing notice.
    pub fn typing_notices(&self) -> Vec<ChatTarget> {
        lock(&self.typing).clone()
    }

    /// `(message_id, new text)` of every edit.
    pub fn edits(&self) -> Vec<(String, String)> {
        lock(&self.edits).clone()
    }
}

#[async_trait]
impl Channel for RecordingChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, handler: Arc<dyn InboundHandler>) -> Result<()> {
        lock(&self.inbox).running = true;
        loop {
            let message = poll_fn(|cx| {
                let mut inbox = lock(&self.inbox);
                match inbox.queue.pop_front() {
                    Some(message) => Poll::Ready(message),
                    None => {
                        inbox.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
            .await;
            handler.handle(message).await;
        }
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        if message.text.is_empty() {
            return Err(Error::InvalidInput("empty message".into()));
        }
        let mut sent = lock(&self.sent);
        sent.push(message);
        Ok(SentMessage {
            message_ids: vec![sent.len().to_string()],
        })
    }

    async fn edit(&self, _target: &ChatTarget, message_id: &str, text: &str) -> Result<()> {
        lock(&self.edits).push((message_id.to_owned(), text.to_owned()));
        Ok(())
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        lock(&self.typing).push(target.clone());
        Ok(())
    }

    fn status(&self) -> ChannelStatus {
        ChannelStatus {
            name: self.name.clone(),
            state: if lock(&self.inbox).running {
                ChannelState::Connected
            } else {
                ChannelState::Stopped
            },
            ..ChannelStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;
    use crate::{Sender, TextFormat};

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    #[async_trait]
    impl InboundHandler for Collect {
        async fn handle(&self, message: IncomingMessage) {
            lock(&self.0).push(message.text.unwrap_or_default());
        }
    }

    #[test]
    fn records_sends_and_delivers_injected_messages() {
        let channel = RecordingChannel::new("fake");
        let target = ChatTarget::chat("1");
        block_on(channel.send(OutgoingMessage {
            target: target.clone(),
            text: "hello".into(),
            format: TextFormat::Plain,
            reply_to: None,
        }))
        .unwrap();
        block_on(channel.typing(&target)).unwrap();
        assert_eq!(channel.sent()[0].text, "hello");
        assert_eq!(channel.typing_notices(), vec![target.clone()]);

        channel.inject(IncomingMessage {
            channel: "fake".into(),
            target,
            message_id: "9".into(),
            sender: Sender {
                id: "u".into(),
                display_name: None,
            },
            text: Some("ping".into()),
            attachments: vec![],
            reply_to: None,
            edited: false,
        });
        let handler = Arc::new(Collect::default());
        // Run until the injected message is handled, then stop by dropping.
        let run = channel.run(handler.clone());
        let mut run = std::pin::pin!(run);
        let waker = std::task::Waker::noop();
        let _ = run
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        assert_eq!(*lock(&handler.0), vec!["ping".to_string()]);
        assert_eq!(channel.status().state, ChannelState::Connected);
    }
}

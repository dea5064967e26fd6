//! The channels on one gateway at a time, when several gateways share a
//! store (`OCG_DATABASE_URL`).
//!
//! The gateway holding the [`Lease`] runs every chat channel and the
//! delivery of scheduled answers; the others serve the web UI and the APIs
//! and stand by, each channel shown as [`ChannelState::Standby`] through a
//! [`LeasedChannel`]. The holder renews the lease every third of its time
//! to live; a gateway that dies stops renewing, and when the lease has
//! expired (by the store's clock) the next gateway takes it, replays the
//! channels' journals from the store ([`crate::journal::share_journals`])
//! and answers what was received and not answered yet. Journal writes are
//! fenced by the lease, so a holder that was merely cut off cannot write
//! over its successor's records, and it stops its channels as soon as a
//! renewal is refused (or when renewals failed for two thirds of the time
//! to live, before the lease can pass on).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ocg_core::{
    Channel, ChannelCapabilities, ChannelState, ChannelStateStore, ChannelStatus, ChatTarget,
    Error, Fence, InboundHandler, OutgoingMessage, Result, SentMessage, WebhookRequest,
    WebhookResponse,
};

/// The name of the channels' lease.
pub const CHANNELS_LEASE: &str = "channels";

/// The channels' lease, as one gateway sees it.
pub struct Lease {
    store: Arc<dyn ChannelStateStore>,
    fence: Fence,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("fence", &self.fence)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Lease `fence.lease` in `store` for `fence.holder`, `ttl` at a time.
    pub fn new(store: Arc<dyn ChannelStateStore>, fence: Fence, ttl: Duration) -> Self {
        Lease { store, fence, ttl }
    }

    /// Who holds it and under which name (what journal writes are fenced by).
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    fn every(&self) -> Duration {
        self.ttl / 3
    }

    async fn take(&self) -> Result<bool> {
        self.store
            .take_lease(&self.fence.lease, &self.fence.holder, self.ttl)
            .await
    }

    /// Wait until this gateway holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.take().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot reach the channels' lease"),
            }
            tokio::time::sleep(self.every()).await;
        }
    }

    /// Keep the lease; returns once it is lost (see the module docs): when
    /// a renewal is refused, or when none succeeded for two thirds of the
    /// time to live, counted from the moment the last good renewal was
    /// sent (the store counts from no earlier), however long a renewal
    /// hangs.
    pub async fn hold(&self) {
        let mut renewed = Instant::now();
        let mut pause = self.every();
        loop {
            tokio::time::sleep(pause).await;
            // After a failure, retried sooner while there is time.
            pause = self.every() / 4;
            let deadline = renewed + self.ttl * 2 / 3;
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline.into(), self.take()).await {
                Ok(Ok(true)) => {
                    renewed = sent;
                    pause = self.every();
                }
                Ok(Ok(false)) => {
                    tracing::warn!("another gateway took the channels' lease");
                    return;
                }
                Ok(Err(error)) if Instant::now() < deadline => {
                    tracing::warn!(%error, "renewing the channels' lease failed; retrying");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the channels' lease could not be renewed in time");
                    return;
                }
                Err(_) => {
                    tracing::warn!("renewing the channels' lease hung past its deadline");
                    return;
                }
            }
        }
    }

    /// Give the lease up, so another gateway takes over at once.
    pub async fn release(&self) {
        if let Err(error) = self
            .store
            .release_lease(&self.fence.lease, &self.fence.holder)
            .await
        {
            tracing::warn!(%error, "releasing the channels' lease failed; it expires by itself");
        }
    }

    /// Run `channels` whenever this gateway holds the lease: take it
    /// (waiting while another gateway has it), run them until the lease is
    /// lost (then stop them) or until they end (then give the lease up, so
    /// another gateway may try), and wait for it again. Ends only when
    /// dropped (the gateway stopping).
    pub async fn run_while_held<F, Fut>(&self, mut channels: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            self.acquire().await;
            tracing::info!(holder = %self.fence.holder, "this gateway runs the channels");
            tokio::select! {
                () = channels() => {
                    self.release().await;
                    tracing::warn!("the channels ended; standing by");
                    // Another gateway's turn first, if there is one.
                    tokio::time::sleep(self.ttl).await;
                }
                () = self.hold() => tracing::warn!("channels stopped; standing by"),
            }
        }
    }
}

/// A channel of a gateway that may or may not hold the channels' lease:
/// the running channel while it does ([`set`](LeasedChannel::set)), on
/// standby otherwise. What the web UI, webhooks and status pages hold.
pub struct LeasedChannel {
    name: String,
    current: Mutex<Option<Arc<dyn Channel>>>,
}

impl std::fmt::Debug for LeasedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedChannel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LeasedChannel {
    /// Channel `name`, on standby.
    pub fn new(name: impl Into<String>) -> Self {
        LeasedChannel {
            name: name.into(),
            current: Mutex::new(None),
        }
    }

    /// The running channel (`Some`), or standby again (`None`).
    pub fn set(&self, channel: Option<Arc<dyn Channel>>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = channel;
    }

    fn current(&self) -> Result<Arc<dyn Channel>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                Error::unavailable(
                    self.name.clone(),
                    "another gateway runs the channels; this one stands by",
                )
            })
    }
}

#[async_trait]
impl Channel for LeasedChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> ChannelCapabilities {
        self.current().map(|c| c.capabilities()).unwrap_or_default()
    }

    /// Never run itself: the running channel is.
    async fn run(&self, _handler: Arc<dyn InboundHandler>) -> Result<()> {
        Err(Error::Unsupported(
            "a leased channel runs through the channel it holds".into(),
        ))
    }

    async fn send(&self, message: OutgoingMessage) -> Result<SentMessage> {
        self.current()?.send(message).await
    }

    async fn edit(&self, target: &ChatTarget, message_id: &str, text: &str) -> Result<()> {
        self.current()?.edit(target, message_id, text).await
    }

    async fn typing(&self, target: &ChatTarget) -> Result<()> {
        self.current()?.typing(target).await
    }

    /// Webhook calls on standby answer 503, so the platform retries them
    /// (and reaches the gateway that runs the channels, behind one name).
    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookResponse> {
        self.current()?.webhook(request).await
    }

    fn status(&self) -> ChannelStatus {
        match self.current() {
            Ok(channel) => channel.status(),
            Err(_) => ChannelStatus {
                name: self.name.clone(),
                state: ChannelState::Standby,
                ..ChannelStatus::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::testing::RecordingChannel;

    fn hello() -> OutgoingMessage {
        OutgoingMessage {
            target: ChatTarget::chat("1"),
            text: "hi".into(),
            format: ocg_core::TextFormat::default(),
            reply_to: None,
        }
    }

    #[tokio::test]
    async fn a_leased_channel_stands_by_until_it_holds_one() {
        let leased = LeasedChannel::new("telegram");
        assert_eq!(leased.status().state, ChannelState::Standby);
        let sent = leased.send(hello()).await.unwrap_err();
        assert_eq!(sent.code(), "unavailable", "{sent}");
        let running = Arc::new(RecordingChannel::new("telegram"));
        leased.set(Some(running.clone()));
        leased.send(hello()).await.unwrap();
        assert_eq!(running.sent().len(), 1);
        assert_ne!(leased.status().state, ChannelState::Standby);
        leased.set(None);
        assert_eq!(leased.status().state, ChannelState::Standby);
    }

    /// Leases in memory, judged by this process's clock.
    #[derive(Default)]
    struct MemoryLeases {
        held: Mutex<Option<(String, Instant)>>,
        taken: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl ChannelStateStore for MemoryLeases {
        async fn take_lease(&self, _: &str, holder: &str, ttl: Duration) -> Result<bool> {
            let mut held = self.held.lock().unwrap();
            let free = held
                .as_ref()
                .is_none_or(|(who, until)| who == holder || *until < Instant::now());
            if free {
                *held = Some((holder.to_owned(), Instant::now() + ttl));
                self.taken
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(free)
        }
        async fn release_lease(&self, _: &str, holder: &str) -> Result<()> {
            let mut held = self.held.lock().unwrap();
            if held.as_ref().is_some_and(|(who, _)| who == holder) {
                *held = None;
            }
            Ok(())
        }
        async fn read_journal(&self, _: &str) -> Result<Vec<serde_json::Value>> {
            Ok(Vec::new())
        }
        async fn append_journal(&self, _: &str, _: &Fence, _: &[serde_json::Value]) -> Result<()> {
            Ok(())
        }
        async fn replace_journal(&self, _: &str, _: &Fence, _: &[serde_json::Value]) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn channels_that_end_give_the_lease_up_and_are_run_again() {
        let store = Arc::new(MemoryLeases::default());
        let lease = Arc::new(Lease::new(
            store.clone(),
            Fence {
                lease: CHANNELS_LEASE.into(),
                holder: "a".into(),
            },
            Duration::from_millis(60),
        ));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let running = tokio::spawn({
            let (lease, runs) = (lease.clone(), runs.clone());
            async move {
                lease
                    .run_while_held(|| {
                        let runs = runs.clone();
                        async move {
                            // The first time a journal could not be read.
                            if runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                                std::future::pending::<()>().await;
                            }
                        }
                    })
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "run again after giving the lease up"
        );
        assert!(
            store.taken.load(std::sync::atomic::Ordering::Relaxed) >= 3,
            "renewed while running"
        );
        assert!(!running.is_finished());
        running.abort();
    }
}

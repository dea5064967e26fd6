//! A [`ChatStream`] fed by a producer task.

use ocg_core::{ChatEvent, ChatStream};
use tokio::sync::mpsc;

/// Run `producer` as a task sending events through a small bounded channel,
/// and return the receiving end as a stream. Dropping the stream aborts the
/// task, which is how a turn is cancelled when its client goes away.
pub(crate) fn spawn_event_stream<F, Fut>(producer: F) -> ChatStream
where
    F: FnOnce(mpsc::Sender<ChatEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(32);
    let guard = AbortOnDrop(tokio::spawn(producer(tx)).abort_handle());
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        let _guard = &guard;
        rx.poll_recv(cx)
    }))
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

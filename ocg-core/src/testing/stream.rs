use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

/// A [`Stream`] that yields the items of an iterator, each immediately.
pub fn iter_stream<I>(items: I) -> impl Stream<Item = I::Item> + Send + Unpin
where
    I: IntoIterator,
    I::IntoIter: Send + Unpin,
{
    IterStream(items.into_iter())
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> Stream for IterStream<I> {
    type Item = I::Item;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

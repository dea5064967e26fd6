//! In-memory fakes of every trait, for tests and SDK users.
//!
//! They are deterministic, need no runtime of their own and record what they
//! were asked, so a test can assert on the conversation with its neighbour:
//!
//! - [`ScriptedAgent`]: answers with scripted event sequences, or echoes.
//! - [`DeterministicEmbedder`]: hashed bag-of-words vectors; texts sharing
//!   words are similar, so search behaves plausibly without a model.
//! - [`RecordingChannel`]: records what is sent, delivers injected messages.
//! - [`FakeSupervisor`]: a process table in memory.
//! - [`InMemoryVectorStore`]: collections searched by exact cosine.
//!
//! And the contract every [`SessionStore`](crate::SessionStore) keeps, as
//! one check: [`check_session_store`].

mod agent;
mod channel;
mod embedder;
mod session_store;
mod stream;
mod supervisor;
mod vector_store;

pub use agent::ScriptedAgent;
pub use channel::RecordingChannel;
pub use embedder::DeterministicEmbedder;
pub use session_store::check_session_store;
pub use stream::iter_stream;
pub use supervisor::FakeSupervisor;
pub use vector_store::InMemoryVectorStore;

/// Drive a future to completion on the current thread (tests of the fakes
/// need no runtime).
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

//! Index snapshots in the background: written every period while the
//! service runs, and once more when it stops, so a restart loads them
//! instead of rebuilding from SQLite.

use std::sync::Arc;
use std::time::Duration;

use crate::store::CollectionStore;

/// The periodic snapshot task of a store; [`stop`](Self::stop) it to write
/// the last one.
#[derive(Debug)]
pub struct Snapshots {
    store: Arc<CollectionStore>,
    timer: tokio::task::JoinHandle<()>,
}

impl Snapshots {
    /// Write the changed indexes of `store` every `period`.
    pub fn start(store: Arc<CollectionStore>, period: Duration) -> Self {
        let timer = {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    write(&store).await;
                }
            })
        };
        Snapshots { store, timer }
    }

    /// End the timer and write what changed since the last snapshot.
    pub async fn stop(self) {
        self.timer.abort();
        write(&self.store).await;
    }
}

/// Write the changed indexes, off the async threads; failures are logged
/// (SQLite stays the source of truth: a missing snapshot means a rebuild).
async fn write(store: &Arc<CollectionStore>) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.snapshot(false)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(written)) => tracing::debug!(written, "index snapshots written"),
        Ok(Err(error)) => tracing::warn!(%error, "index snapshot failed"),
        Err(error) => tracing::warn!(%error, "index snapshot task failed"),
    }
}

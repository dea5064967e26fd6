//! The [`ChannelStateStore`] contract: what the gateways of one store share
//! about the chat channels, so that any of them can take the channels over.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::Result;

/// Leases (which gateway runs the channels now) and the channels' journals
/// (what arrived, what was answered, where to resume reading), in a store
/// several gateways reach.
///
/// Contract:
/// - A lease is held by one holder at a time, until it expires or is
///   released; [`take_lease`](ChannelStateStore::take_lease) takes a free
///   or expired lease, renews one the holder has, and refuses otherwise.
///   Expiry is judged by the store's clock, so holders need not agree on
///   the time.
/// - A journal is an ordered list of JSON records. Appending and replacing
///   are fenced by a lease ([`Fence`]): they change nothing and fail with
///   [`Error::Unavailable`](crate::Error::Unavailable) unless the caller
///   holds it, so a gateway that lost its lease (paused, cut off) cannot
///   write over its successor's records.
#[async_trait]
pub trait ChannelStateStore: Send + Sync {
    /// Take or renew `lease` for `holder` for `ttl`; whether `holder`
    /// holds it now.
    async fn take_lease(&self, lease: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Give `lease` up, if `holder` has it.
    async fn release_lease(&self, lease: &str, holder: &str) -> Result<()>;

    /// The records of journal `name`, oldest first (none when it is new).
    async fn read_journal(&self, name: &str) -> Result<Vec<Value>>;

    /// Append `records` to journal `name`, while `fence` holds.
    async fn append_journal(&self, name: &str, fence: &Fence, records: &[Value]) -> Result<()>;

    /// Replace journal `name` with `records` (a compaction), while `fence`
    /// holds.
    async fn replace_journal(&self, name: &str, fence: &Fence, records: &[Value]) -> Result<()>;
}

/// Who writes a journal, and under which lease: a write is made only while
/// `holder` holds `lease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease.
    pub lease: String,
    /// Its holder (one gateway process).
    pub holder: String,
}

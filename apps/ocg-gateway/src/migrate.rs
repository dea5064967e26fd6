//! `ocg-gateway migrate` (run by `ocg migrate` after the agent's): copy a
//! single-machine install's channel journals into PostgreSQL, so the
//! gateways of a shared store resume where this one stopped: Telegram's
//! offset, every channel's inbound dedupe, cursor and unanswered messages,
//! and the journal of the scheduler's deliveries.
//!
//! The gateway must be stopped (its data dir is locked while it runs), and
//! no gateway may run the channels on the database: the copy is written
//! under the channels' lease, like any journal write. A journal already in
//! PostgreSQL is left as it is, so a second run copies nothing twice.

use std::time::Duration;

use anyhow::Context;
use ocg_core::config::Config;
use ocg_core::{ChannelStateStore, Fence};
use ocg_gateway_lib::journal;
use ocg_gateway_lib::lease::CHANNELS_LEASE;
use ocg_postgres::PgChannelState;

/// How long the copy may hold the channels' lease.
const LEASE: Duration = Duration::from_secs(60);

/// Copy the channel journals of `config`'s install into the database at `url`.
pub async fn run(config: &Config, url: &str) -> anyhow::Result<()> {
    let _owner = ocg_process::ownership::lock_service(&config.data_dir, "gateway")
        .context("the gateway must be stopped first (`ocg stop`)")?;
    let journals = journal::read_local(&config.data_dir)?;
    let store = PgChannelState::new(ocg_postgres::open(url).await?);
    let fence = Fence {
        lease: CHANNELS_LEASE.into(),
        holder: ocg_process::instance_id(),
    };
    if !store.take_lease(&fence.lease, &fence.holder, LEASE).await? {
        anyhow::bail!(
            "a gateway on this database runs the channels; stop it before copying the journals"
        );
    }
    // Whatever happens, the lease is given back.
    let copied = async {
        let (mut copied, mut present) = (0usize, 0usize);
        // An empty journal has nothing to copy.
        for (name, records) in journals.into_iter().filter(|(_, r)| !r.is_empty()) {
            if store.read_journal(&name).await?.is_empty() {
                store.replace_journal(&name, &fence, &records).await?;
                copied += 1;
            } else {
                present += 1;
            }
        }
        anyhow::Ok((copied, present))
    }
    .await;
    store.release_lease(&fence.lease, &fence.holder).await?;
    let (copied, present) = copied?;
    println!("channel journals: {copied} copied, {present} already in PostgreSQL");
    Ok(())
}

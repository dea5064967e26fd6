//! The heartbeat: a periodic check-in turn that speaks only when something
//! needs attention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ocg_core::{Agent, ChatRequest};

use super::clock::{millis, time_until};
use super::store::{ScheduleStore, chat_of_session};
use crate::AgentError;

/// The reply meaning "nothing needs attention"; a reply that is this token
/// (with at most punctuation or whitespace around it) is not delivered.
pub const HEARTBEAT_OK: &str = "HEARTBEAT_OK";

/// The longest checklist read, in bytes.
const MAX_CHECKLIST: usize = 16 * 1024;

/// How the heartbeat runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Between beats; beats fall on multiples of it since the Unix epoch.
    pub every: Duration,
    /// The session the turns run in; when it is a chat's (`telegram:42`)
    /// what needs attention is sent there.
    pub session: String,
    /// The checklist (`HEARTBEAT.md` in the workspace); a beat with no
    /// file, or an empty one, is skipped without calling the model.
    pub checklist: PathBuf,
}

/// What the model's reply to a beat means for the chat: `None` when it
/// says nothing needs attention, else the text to send (the token removed).
pub fn heartbeat_message(reply: &str) -> Option<String> {
    let text = reply.trim();
    let rest = text
        .strip_prefix(HEARTBEAT_OK)
        .or_else(|| text.strip_suffix(HEARTBEAT_OK))
        .unwrap_or(text)
        .trim();
    let meaningful = rest.chars().any(char::is_alphanumeric);
    (meaningful && !rest.contains(HEARTBEAT_OK)).then(|| rest.to_owned())
}

/// The prompt of one beat.
fn prompt(checklist: &str) -> String {
    format!(
        "[Heartbeat] Go through this checklist. If nothing needs the user's attention, \
         reply exactly {HEARTBEAT_OK} and nothing else. Otherwise reply with only what needs \
         attention.\n\n{checklist}"
    )
}

/// Run beats until `until` completes. Each beat is claimed in `store`
/// (`schedule_heartbeats`), so two agents on one database beat once.
pub fn spawn_heartbeat(
    config: HeartbeatConfig,
    store: ScheduleStore,
    agent: Arc<dyn Agent>,
    owner: String,
    until: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(until);
        let every = millis(config.every).max(1_000);
        loop {
            let now = store.now_ms();
            let next = (now / every + 1) * every;
            let wait = time_until(now, next);
            tokio::select! {
                () = &mut until => return,
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(error) = beat(&config, &store, agent.as_ref(), &owner, next).await {
                tracing::warn!(%error, "heartbeat failed");
            }
        }
    })
}

/// One beat at occurrence `at`.
pub async fn beat(
    config: &HeartbeatConfig,
    store: &ScheduleStore,
    agent: &dyn Agent,
    owner: &str,
    at: i64,
) -> Result<(), AgentError> {
    let checklist = match tokio::fs::read(&config.checklist).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_CHECKLIST)]).into_owned(),
        Err(_) => String::new(),
    };
    if checklist.trim().is_empty() {
        tracing::debug!(file = %config.checklist.display(), "no heartbeat checklist; beat skipped");
        return Ok(());
    }
    if !store.claim_heartbeat(at, owner).await? {
        return Ok(());
    }
    let reply = agent
        .chat(ChatRequest::user(
            config.session.clone(),
            prompt(&checklist),
        ))
        .await
        .map_err(|e| AgentError::Internal(format!("heartbeat turn: {e}")))?;
    let Some(text) = heartbeat_message(&reply.message.content) else {
        tracing::debug!("heartbeat: nothing needs attention");
        return Ok(());
    };
    match chat_of_session(&config.session) {
        Some(target) => {
            store
                .enqueue(&format!("heartbeat:{at}"), &target, &text)
                .await?;
        }
        None => tracing::info!(
            session = %config.session,
            "heartbeat found something; the session has no chat, so it stays there"
        ),
    }
    Ok(())
}

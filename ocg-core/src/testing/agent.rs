use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::iter_stream;
use crate::{
    Agent, ChatEvent, ChatRequest, ChatStream, HealthCheck, HealthReport, Message, Result, Role,
    Usage,
};

/// An [`Agent`] that plays back scripted turns.
///
/// Each call takes the next script (a list of events) from the queue; with the
/// queue empty it echoes the last user message as `echo: <text>` in one
/// `delta` and a `done`. Every request is recorded.
#[derive(Debug, Default)]
pub struct ScriptedAgent {
    scripts: Mutex<VecDeque<Vec<ChatEvent>>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedAgent {
    /// An agent that echoes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a script for a later turn.
    pub fn push_script(&self, events: Vec<ChatEvent>) -> &Self {
        lock(&self.scripts).push_back(events);
        self
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    async fn chat_stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let events = lock(&self.scripts)
            .pop_front()
            .unwrap_or_else(|| echo(&request));
        lock(&self.requests).push(request);
        Ok(Box::pin(iter_stream(events)))
    }

    async fn health(&self) -> HealthReport {
        HealthReport::from_checks(
            "agent",
            crate::VERSION,
            0,
            vec![HealthCheck::ok("script", None)],
        )
    }
}

fn echo(request: &ChatRequest) -> Vec<ChatEvent> {
    let text = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str());
    let reply = format!("echo: {text}");
    let tokens = |s: &str| u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX);
    vec![
        ChatEvent::Delta {
            text: reply.clone(),
        },
        ChatEvent::Done {
            usage: Some(Usage {
                prompt_tokens: tokens(text),
                completion_tokens: tokens(&reply),
                total_tokens: tokens(text) + tokens(&reply),
            }),
            message: Message::assistant(reply),
            session_key: request.session_key.clone(),
        },
    ]
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::block_on;

    #[test]
    fn echoes_then_plays_scripts() {
        let agent = ScriptedAgent::new();
        let reply = block_on(agent.chat(ChatRequest::user("web:1", "hi there"))).unwrap();
        assert_eq!(reply.message.content, "echo: hi there");
        assert_eq!(reply.session_key.as_deref(), Some("web:1"));

        agent.push_script(vec![ChatEvent::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
        }]);
        let err = block_on(agent.chat(ChatRequest::user("web:1", "again"))).unwrap_err();
        assert_eq!(err.code(), "rate_limited");
        assert_eq!(agent.requests().len(), 2);
    }
}

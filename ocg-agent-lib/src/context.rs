//! Building what the model sees, and deciding when to compact.
//!
//! Tokens are estimated, never counted over HTTP: a quarter of the UTF-8
//! bytes, rounded up, plus 4 per message for role and framing. That
//! overestimates English slightly (safe for fitting) and is exact enough for
//! budgeting. Answers from the model carry the vendor's own count.
//!
//! The prompt is: the system prompt (plus the workspace's `AGENTS.md` when
//! present), the latest compaction summary, then the most recent whole turns
//! of history that fit in `context_window - max_answer_tokens`, then the new
//! messages. Turns are never split, so a tool call is never separated from
//! its result. The system prompt and the current turn are always included.

use ocg_core::{Message, Role};

use crate::sessions::SessionContext;
use ocg_core::HistoryEntry;

/// Estimated tokens of `text` as one message.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4))
        .unwrap_or(u32::MAX)
        .saturating_add(4)
}

/// Estimated tokens of a message, tool calls included.
pub fn message_tokens(message: &Message) -> u32 {
    let calls: usize = message
        .tool_calls
        .iter()
        .map(|c| c.name.len() + c.arguments.to_string().len())
        .sum();
    estimate_tokens(&message.content)
        .saturating_add(u32::try_from(calls.div_ceil(4)).unwrap_or(u32::MAX))
}

/// The context window of well-known models; `None` for unknown ones (then the
/// configured `OCG_CONTEXT_WINDOW` or the default applies).
pub fn known_context_window(model: &str) -> Option<u32> {
    let model = model.to_ascii_lowercase();
    let table: &[(&str, u32)] = &[
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("gpt-5", 400_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
        ("gpt-3.5-turbo", 16_385),
        ("claude", 200_000),
        ("smollm2", 8_192),
        ("llama-3", 128_000),
        ("qwen2.5", 32_768),
        ("mistral", 32_768),
    ];
    table
        .iter()
        .find(|(prefix, _)| model.contains(prefix))
        .map(|(_, window)| *window)
}

/// Prompt-building settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextBudget {
    /// The system prompt.
    pub system_prompt: String,
    /// The model's context window in tokens.
    pub context_window: u32,
    /// Tokens kept free for the answer.
    pub max_answer_tokens: u32,
    /// Compact when the history passes this share of the usable window.
    pub compaction_threshold: f32,
}

impl ContextBudget {
    /// Tokens available for system prompt, summary, history and new messages.
    pub fn usable(&self) -> u32 {
        self.context_window.saturating_sub(self.max_answer_tokens)
    }

    /// The messages to send: system prompt, summary, the recent whole turns
    /// that fit, then `new`.
    pub fn build(&self, session: &SessionContext, new: &[Message]) -> Vec<Message> {
        let mut head = vec![Message::system(self.system_prompt.clone())];
        if let Some(summary) = &session.summary {
            head.push(Message::system(format!(
                "Summary of the earlier conversation (older messages were archived):\n{summary}"
            )));
        }
        let fixed: u32 = head.iter().chain(new).map(message_tokens).sum();
        let mut budget = self.usable().saturating_sub(fixed);

        // Walk turns from the newest, keeping whole turns while they fit.
        let mut keep_from = session.messages.len();
        for turn in turns(&session.messages).into_iter().rev() {
            let cost: u32 = session.messages[turn.clone()]
                .iter()
                .map(|m| m.tokens)
                .sum();
            if cost > budget {
                break;
            }
            budget -= cost;
            keep_from = turn.start;
        }
        head.extend(
            session.messages[keep_from..]
                .iter()
                .map(|m| m.message.clone()),
        );
        head.extend(new.iter().cloned());
        head
    }

    /// Whether the stored history is big enough to compact.
    pub fn needs_compaction(&self, session: &SessionContext) -> bool {
        let history: u32 = session.messages.iter().map(|m| m.tokens).sum();
        history as f32 > self.compaction_threshold * self.usable() as f32
    }
}

/// Index ranges of whole turns in `messages` (which are in id order).
fn turns(messages: &[HistoryEntry]) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        match ranges.last_mut() {
            Some(range) if messages[range.start].turn == message.turn => range.end = index + 1,
            _ => ranges.push(index..index + 1),
        }
    }
    ranges
}

/// The oldest whole turns holding about half the history's tokens (at least
/// one turn, never the newest): what compaction summarizes. Returns the id
/// of their last message and their text, or `None` when there is too little.
pub fn compaction_slice(session: &SessionContext) -> Option<(i64, String)> {
    let ranges = turns(&session.messages);
    if ranges.len() < 2 {
        return None;
    }
    let total: u32 = session.messages.iter().map(|m| m.tokens).sum();
    let mut taken = 0u32;
    let mut end = 0usize;
    for range in &ranges[..ranges.len() - 1] {
        taken += session.messages[range.clone()]
            .iter()
            .map(|m| m.tokens)
            .sum::<u32>();
        end = range.end;
        if taken * 2 >= total {
            break;
        }
    }
    let slice = &session.messages[..end];
    let transcript = slice
        .iter()
        .map(|m| {
            let who = match m.message.role {
                Role::User => "User",
                Role::Assistant => "Assistant",
                Role::Tool => "Tool result",
                Role::System => "System",
            };
            let calls: Vec<String> = m
                .message
                .tool_calls
                .iter()
                .map(|c| format!("[called {} with {}]", c.name, c.arguments))
                .collect();
            format!("{who}: {} {}", m.message.content, calls.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some((slice.last()?.id, transcript))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: i64, turn: i64, role: Role, text: &str, tokens: u32) -> HistoryEntry {
        HistoryEntry {
            id,
            turn,
            message: Message::new(role, text),
            tokens,
            created_at_ms: 0,
            archived: false,
        }
    }

    fn budget(window: u32) -> ContextBudget {
        ContextBudget {
            system_prompt: "sys".into(),
            context_window: window,
            max_answer_tokens: 20,
            compaction_threshold: 0.75,
        }
    }

    fn session() -> SessionContext {
        SessionContext {
            summary: None,
            messages: vec![
                stored(1, 1, Role::User, "old q", 30),
                stored(2, 1, Role::Assistant, "old a", 30),
                stored(3, 2, Role::User, "new q", 10),
                stored(4, 2, Role::Assistant, "new a", 10),
            ],
        }
    }

    #[test]
    fn keeps_the_newest_whole_turns_that_fit() {
        let new = [Message::user("now")];
        // usable = 100 - 20 = 80; fixed ≈ 5 + 5 = 10; turn 2 (20) fits, turn 1 (60) does not.
        let messages = budget(100).build(&session(), &new);
        let texts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["sys", "new q", "new a", "now"]);
        // A big window keeps everything.
        assert_eq!(budget(10_000).build(&session(), &new).len(), 6);
        // A tiny one still keeps the system prompt and the current turn.
        let tiny = budget(10).build(&session(), &new);
        assert_eq!(
            tiny.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["sys", "now"]
        );
    }

    #[test]
    fn summary_follows_the_system_prompt() {
        let mut with_summary = session();
        with_summary.summary = Some("they said hello".into());
        let messages = budget(10_000).build(&with_summary, &[Message::user("x")]);
        assert_eq!(messages[1].role, Role::System);
        assert!(messages[1].content.contains("they said hello"));
    }

    #[test]
    fn compaction_takes_old_turns_never_the_newest() {
        assert!(budget(100).needs_compaction(&session()));
        assert!(!budget(10_000).needs_compaction(&session()));
        let (up_to, transcript) = compaction_slice(&session()).unwrap();
        assert_eq!(up_to, 2);
        assert!(transcript.contains("User: old q") && !transcript.contains("new q"));
        let mut one_turn = session();
        one_turn.messages.truncate(2);
        assert!(compaction_slice(&one_turn).is_none());
    }

    #[test]
    fn estimates_and_known_windows() {
        assert_eq!(estimate_tokens(""), 4);
        assert_eq!(estimate_tokens("abcdefgh"), 6);
        assert_eq!(known_context_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(known_context_window("claude-sonnet-4-5"), Some(200_000));
        assert_eq!(known_context_window("SmolLM2-135M-Instruct"), Some(8_192));
        assert_eq!(known_context_window("mystery"), None);
    }
}

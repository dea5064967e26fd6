//! Chat wire types: the same JSON on the agent socket, the WebSocket and in SDKs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person (or an external system speaking for one).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// Its name on the wire and in stores (`system`, `user`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// The role named `name` ([`as_str`](Role::as_str)), if any.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id; the tool result refers to it.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON (an object for well-behaved models).
    pub arguments: Value,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text content (may be empty for an assistant message that only calls tools).
    #[serde(default)]
    pub content: String,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with text content and nothing else.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

/// Token accounting of one turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens sent to the model.
    pub prompt_tokens: u32,
    /// Tokens the model produced.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
}

/// A request for one agent turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The session to continue (`web:<id>`, `telegram:<chat_id>`, `api:<user>`).
    /// `None` is a stateless turn over exactly `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// New messages of this turn (for a session: usually one user message).
    pub messages: Vec<Message>,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Cap on the answer's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// A turn with one user message in `session_key`.
    pub fn user(session_key: impl Into<String>, text: impl Into<String>) -> Self {
        ChatRequest {
            session_key: Some(session_key.into()),
            messages: vec![Message::user(text)],
            ..Default::default()
        }
    }
}

/// One event of a streamed agent turn.
///
/// Serialized as an object tagged by `type`, e.g.
/// `{"type":"delta","text":"Hel"}`. A stream is a sequence of `delta`,
/// `tool_start` and `tool_end` events ending in exactly one `done` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChatEvent {
    /// A piece of the answer's text.
    Delta {
        /// The text to append.
        text: String,
    },
    /// A tool call begins.
    ToolStart {
        /// Tool call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as sent by the model.
        arguments: Value,
    },
    /// A tool call ended.
    ToolEnd {
        /// Tool call id.
        id: String,
        /// Tool name.
        name: String,
        /// What the tool returned (or its error text).
        result: String,
        /// Whether the tool succeeded.
        ok: bool,
    },
    /// The turn finished.
    Done {
        /// The final assistant message.
        message: Message,
        /// Token usage, when the provider reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// The session the turn was stored in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_key: Option<String>,
    },
    /// The turn failed; nothing follows.
    Error {
        /// Stable code (see [`crate::Error::code`]).
        code: String,
        /// For a person.
        message: String,
    },
}

impl ChatEvent {
    /// Whether this event ends a stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ChatEvent::Done { .. } | ChatEvent::Error { .. })
    }

    /// The error event for `error`.
    pub fn from_error(error: &crate::Error) -> Self {
        ChatEvent::Error {
            code: error.code().to_owned(),
            message: error.to_string(),
        }
    }
}

/// The collected result of one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The final assistant message.
    pub message: Message,
    /// Token usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The session the turn was stored in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_event_json_shape_is_tagged() {
        let event = ChatEvent::Delta { text: "Hel".into() };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"delta","text":"Hel"}"#
        );
        let end: ChatEvent = serde_json::from_str(
            r#"{"type":"tool_end","id":"c1","name":"read","result":"ok","ok":true}"#,
        )
        .unwrap();
        assert_eq!(
            end,
            ChatEvent::ToolEnd {
                id: "c1".into(),
                name: "read".into(),
                result: "ok".into(),
                ok: true
            }
        );
        assert!(!end.is_terminal());
    }

    #[test]
    fn done_round_trips_and_is_terminal() {
        let done = ChatEvent::Done {
            message: Message::assistant("hi"),
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 1,
                total_tokens: 4,
            }),
            session_key: Some("web:1".into()),
        };
        let json = serde_json::to_string(&done).unwrap();
        assert_eq!(serde_json::from_str::<ChatEvent>(&json).unwrap(), done);
        assert!(done.is_terminal());
    }

    #[test]
    fn message_omits_empty_tool_fields() {
        let json = serde_json::to_value(Message::user("x")).unwrap();
        assert_eq!(json, serde_json::json!({"role":"user","content":"x"}));
    }
}

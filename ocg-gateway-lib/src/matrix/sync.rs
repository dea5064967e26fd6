//! What the channel reads out of a `/sync` answer: invitations and the new
//! events of joined rooms, in order.

use serde_json::{Value, json};

/// The filter every `/sync` uses: messages (plain and encrypted) of the
/// rooms' timelines, nothing of presence, receipts, typing or account data.
pub(super) fn filter(timeline_limit: u32) -> String {
    json!({
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": timeline_limit, "types": ["m.room.message", "m.room.encrypted"]},
            "state": {"types": [], "lazy_load_members": true},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    })
    .to_string()
}

/// An invitation of the bot to a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Invite {
    pub room: String,
    /// Who invited us.
    pub inviter: String,
}

/// What an event of a joined room is, for the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Content {
    /// Text to answer (`m.text`, `m.emote`), without a reply's quote.
    Text {
        body: String,
        /// The event replied to.
        reply_to: Option<String>,
        /// The thread's root event, in a thread.
        thread: Option<String>,
    },
    /// End-to-end encrypted: the channel cannot read it.
    Encrypted,
}

/// An event of a joined room worth looking at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomEvent {
    pub room: String,
    pub event_id: String,
    pub sender: String,
    pub content: Content,
}

/// One `/sync` answer, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Batch {
    /// Where the next sync starts.
    pub next_batch: String,
    pub invites: Vec<Invite>,
    pub events: Vec<RoomEvent>,
    /// Rooms whose timeline skipped events (more arrived than one sync
    /// returns): those events are not answered.
    pub limited: Vec<String>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key)?.as_str().map(str::to_owned)
}

/// A reply's body without the quote of the message replied to (the
/// `> <@user:server> …` lines and the blank line after them).
fn without_reply_quote(body: &str) -> &str {
    let mut rest = body;
    while let Some(line_end) = rest.find('\n').filter(|_| rest.starts_with('>')) {
        rest = &rest[line_end + 1..];
    }
    if rest.starts_with('>') {
        return body;
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

fn content(event: &Value) -> Option<Content> {
    let content = event.get("content")?;
    match event.get("type")?.as_str()? {
        "m.room.encrypted" => Some(Content::Encrypted),
        "m.room.message" => {
            // `m.notice` is what bots send: answering them loops two bots.
            if !matches!(
                content.get("msgtype").and_then(Value::as_str),
                Some("m.text" | "m.emote")
            ) {
                return None;
            }
            let relates = content.get("m.relates_to");
            let relation = relates
                .and_then(|r| r.get("rel_type"))
                .and_then(Value::as_str);
            // An edit repeats a message already answered.
            if relation == Some("m.replace") {
                return None;
            }
            let reply_to = relates
                .and_then(|r| r.get("m.in_reply_to"))
                .and_then(|r| text(r, "event_id"));
            let thread = relates
                .filter(|_| relation == Some("m.thread"))
                .and_then(|r| text(r, "event_id"));
            let body = text(content, "body")?;
            let body = if reply_to.is_some() {
                without_reply_quote(&body)
            } else {
                &body
            }
            .trim()
            .to_owned();
            (!body.is_empty()).then_some(Content::Text {
                body,
                reply_to,
                thread,
            })
        }
        _ => None,
    }
}

/// Read a `/sync` answer for the bot `me`; `None` when it has no
/// `next_batch`. Our own events are left out.
pub(super) fn read(answer: &Value, me: &str) -> Option<Batch> {
    let mut batch = Batch {
        next_batch: text(answer, "next_batch")?,
        ..Batch::default()
    };
    let rooms = answer.get("rooms");
    let section = |name: &str| {
        rooms
            .and_then(|r| r.get(name))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    };
    for (room, invited) in section("invite") {
        let events = invited
            .pointer("/invite_state/events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let inviter = events
            .filter(|e| {
                e.get("type").and_then(Value::as_str) == Some("m.room.member")
                    && e.get("state_key").and_then(Value::as_str) == Some(me)
                    && e.pointer("/content/membership").and_then(Value::as_str) == Some("invite")
            })
            .find_map(|e| text(e, "sender"));
        if let Some(inviter) = inviter {
            batch.invites.push(Invite {
                room: room.clone(),
                inviter,
            });
        }
    }
    for (room, joined) in section("join") {
        let timeline = joined.get("timeline");
        if timeline
            .and_then(|t| t.get("limited"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            batch.limited.push(room.clone());
        }
        let events = timeline
            .and_then(|t| t.get("events"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for event in events {
            let (Some(event_id), Some(sender)) = (text(event, "event_id"), text(event, "sender"))
            else {
                continue;
            };
            if sender == me {
                continue;
            }
            if let Some(content) = content(event) {
                batch.events.push(RoomEvent {
                    room: room.clone(),
                    event_id,
                    sender,
                    content,
                });
            }
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, sender: &str, content: Value) -> Value {
        json!({"type": "m.room.message", "event_id": id, "sender": sender, "content": content})
    }

    #[test]
    fn a_sync_answer_is_read_into_invites_and_messages() {
        let answer = json!({
            "next_batch": "s72_1",
            "rooms": {
                "invite": {"!dm:ocg.test": {"invite_state": {"events": [
                    {"type": "m.room.name", "state_key": "", "sender": "@ann:ocg.test", "content": {"name": "x"}},
                    {"type": "m.room.member", "state_key": "@bot:ocg.test", "sender": "@ann:ocg.test",
                     "content": {"membership": "invite", "is_direct": true}},
                ]}}},
                "join": {"!room:ocg.test": {"timeline": {"limited": true, "events": [
                    message("$1", "@ann:ocg.test", json!({"msgtype": "m.text", "body": " hello "})),
                    message("$2", "@bot:ocg.test", json!({"msgtype": "m.text", "body": "our own"})),
                    message("$3", "@ann:ocg.test", json!({"msgtype": "m.notice", "body": "a bot's"})),
                    message("$4", "@ann:ocg.test", json!({"msgtype": "m.text", "body": "* fixed",
                        "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}})),
                    message("$5", "@ann:ocg.test", json!({"msgtype": "m.text",
                        "body": "> <@bot:ocg.test> earlier\n> answer\n\nand now?",
                        "m.relates_to": {"m.in_reply_to": {"event_id": "$0"}}})),
                    message("$6", "@ann:ocg.test", json!({"msgtype": "m.text", "body": "in a thread",
                        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                                         "m.in_reply_to": {"event_id": "$root"}}})),
                    {"type": "m.room.encrypted", "event_id": "$7", "sender": "@ann:ocg.test",
                     "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."}},
                    {"type": "m.room.message", "sender": "@ann:ocg.test", "content": {"msgtype": "m.text", "body": "no id"}},
                ]}}},
            },
        });
        let batch = read(&answer, "@bot:ocg.test").unwrap();
        assert_eq!(batch.next_batch, "s72_1");
        assert_eq!(
            batch.invites,
            vec![Invite {
                room: "!dm:ocg.test".into(),
                inviter: "@ann:ocg.test".into()
            }]
        );
        assert_eq!(batch.limited, vec!["!room:ocg.test".to_owned()]);
        let got: Vec<(&str, &Content)> = batch
            .events
            .iter()
            .map(|e| (e.event_id.as_str(), &e.content))
            .collect();
        let text = |body: &str, reply_to: Option<&str>, thread: Option<&str>| Content::Text {
            body: body.into(),
            reply_to: reply_to.map(str::to_owned),
            thread: thread.map(str::to_owned),
        };
        assert_eq!(
            got,
            vec![
                ("$1", &text("hello", None, None)),
                ("$5", &text("and now?", Some("$0"), None)),
                ("$6", &text("in a thread", Some("$root"), Some("$root"))),
                ("$7", &Content::Encrypted),
            ]
        );
    }

    #[test]
    fn an_answer_without_next_batch_is_refused_and_quotes_are_stripped_only_when_whole() {
        assert!(read(&json!({"rooms": {}}), "@b:x").is_none());
        assert_eq!(without_reply_quote("> a\n> b\n\nc"), "c");
        assert_eq!(without_reply_quote("> only a quote"), "> only a quote");
        assert_eq!(without_reply_quote("plain"), "plain");
    }
}

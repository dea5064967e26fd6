//! The [`SessionStore`] contract as one check, run against every store.
//!
//! A check panics with what differs, so it unwraps and expects freely.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{Error, Message, NewMessage, Role, SessionStore, StoreStats, ToolCall};

fn message(role: Role, text: &str) -> NewMessage {
    NewMessage {
        message: Message::new(role, text),
        tokens: 3,
    }
}

/// Check that `store`, empty, keeps the [`SessionStore`] contract: turns
/// numbered per session and stored whole, tool calls round-tripping,
/// history pages, compaction, rename, reset, delete and the not-found
/// errors. Panics with what differs; session keys start with `contract:`.
pub async fn check_session_store(store: &dyn SessionStore) {
    store.check().await.expect("the store is reachable");
    let key = "contract:web:1";
    assert!(
        store.context(key).await.unwrap().messages.is_empty(),
        "an unknown session has no context"
    );
    let first = vec![message(Role::User, "hi"), message(Role::Assistant, "hello")];
    assert_eq!(store.append_turn(key, first).await.unwrap(), 1);

    let mut call = Message::assistant("");
    call.tool_calls.push(ToolCall {
        id: "c1".into(),
        name: "read".into(),
        arguments: serde_json::json!({"path": "a", "lines": [1, 2]}),
    });
    let mut result = Message::new(Role::Tool, "file text ✓ with \"quotes\"\nand lines");
    result.tool_call_id = Some("c1".into());
    let second = vec![
        message(Role::User, "read a"),
        NewMessage {
            message: call.clone(),
            tokens: 5,
        },
        NewMessage {
            message: result.clone(),
            tokens: 2,
        },
        message(Role::Assistant, "done"),
    ];
    assert_eq!(store.append_turn(key, second).await.unwrap(), 2);
    assert_eq!(
        store
            .append_turn("contract:other", vec![message(Role::User, "elsewhere")])
            .await
            .unwrap(),
        1,
        "turns are numbered per session"
    );

    let context = store.context(key).await.unwrap();
    assert_eq!(context.summary, None);
    let texts: Vec<&str> = context
        .messages
        .iter()
        .map(|e| e.message.content.as_str())
        .collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    assert_eq!(texts[..2], ["hi", "hello"]);
    assert!(
        context.messages.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase"
    );
    assert_eq!(context.messages[3].message, call, "tool calls round-trip");
    assert_eq!(
        context.messages[4].message, result,
        "tool results round-trip"
    );
    assert_eq!(context.messages[3].tokens, 5);
    assert_eq!(
        context.messages.iter().map(|e| e.turn).collect::<Vec<_>>(),
        [1, 1, 2, 2, 2, 2]
    );
    assert!(
        context
            .messages
            .iter()
            .all(|e| !e.archived && e.created_at_ms > 0)
    );

    let page = store.history(key, 1, 2, false).await.unwrap();
    let texts: Vec<&str> = page.iter().map(|m| m.message.content.as_str()).collect();
    assert_eq!(texts, ["hello", "read a"], "a page of the history");

    let up_to = context.messages[1].id;
    let archived = store.compact(key, up_to, "greetings".into()).await.unwrap();
    assert_eq!(archived, 2);
    let context = store.context(key).await.unwrap();
    assert_eq!(context.summary.as_deref(), Some("greetings"));
    assert_eq!(context.messages.len(), 4);
    let all = store.history(key, 0, 100, true).await.unwrap();
    assert_eq!(all.len(), 6, "the archive stays queryable");
    assert!(all[0].archived && all[1].archived && !all[2].archived);
    assert_eq!(store.history(key, 0, 100, false).await.unwrap().len(), 4);

    store.rename(key, "My chat").await.unwrap();
    let list = store.list().await.unwrap();
    let ours = list.iter().find(|s| s.key == key).expect("listed");
    assert_eq!(ours.title.as_deref(), Some("My chat"));
    assert_eq!((ours.messages, ours.archived), (4, 2));
    assert_eq!(
        list[0].key, "contract:other",
        "the most recently used first"
    );
    assert_eq!(
        store.stats().await.unwrap(),
        StoreStats {
            sessions: 2,
            messages: 7
        }
    );

    store.reset(key).await.unwrap();
    let context = store.context(key).await.unwrap();
    assert!(context.messages.is_empty() && context.summary.is_none());
    let list = store.list().await.unwrap();
    let ours = list
        .iter()
        .find(|s| s.key == key)
        .expect("a reset session stays");
    assert_eq!((ours.messages, ours.archived), (0, 0));
    let turn = store
        .append_turn(key, vec![message(Role::User, "again")])
        .await
        .unwrap();
    assert_eq!(turn, 1, "a reset session starts over");

    store.delete(key).await.unwrap();
    assert!(store.list().await.unwrap().iter().all(|s| s.key != key));
    for missing in [
        store.delete(key).await,
        store.reset("contract:nope").await,
        store.rename("contract:nope", "t").await,
        store
            .history("contract:nope", 0, 10, false)
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(missing, Err(Error::NotFound(_))),
            "a missing session is not found: {missing:?}"
        );
    }
    assert_eq!(
        store.stats().await.unwrap(),
        StoreStats {
            sessions: 1,
            messages: 1
        }
    );
    // The lock can be taken and given back, and taken again.
    drop(store.lock_session("contract:other").await.unwrap());
    drop(store.lock_session("contract:other").await.unwrap());
}

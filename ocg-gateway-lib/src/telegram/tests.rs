use super::*;

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<TelegramConfig>, GatewayError> {
    TelegramConfig::from_config(&crate::settings::test_config(pairs))
}

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no token, no channel");
    let c = config(&[
        ("TELEGRAM_BOT_TOKEN", "123:abc-DEF_g"),
        ("TELEGRAM_ALLOWED_CHATS", " 42, -1001 ,"),
        ("TELEGRAM_API_URL", "http://127.0.0.1:9/"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(c.allowed_chats, HashSet::from([42, -1001]));
    assert_eq!(c.api_url, "http://127.0.0.1:9");
    assert_eq!(c.mode, TelegramMode::LongPolling);
    assert_eq!(c.state_dir, PathBuf::from("/srv/ocg/telegram"));
    assert_eq!(c.bot_id(), "123");
    assert!(
        !format!("{c:?}").contains("abc-DEF"),
        "the token is redacted"
    );

    let bad = config(&[("TELEGRAM_BOT_TOKEN", "not a token SECRETPART")])
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("TELEGRAM_BOT_TOKEN") && !bad.contains("SECRETPART"),
        "{bad}"
    );
    let bad = config(&[
        ("TELEGRAM_BOT_TOKEN", "1:a"),
        ("TELEGRAM_ALLOWED_CHATS", "me"),
    ])
    .unwrap_err()
    .to_string();
    assert!(bad.contains("TELEGRAM_ALLOWED_CHATS"), "{bad}");
    let bad = config(&[("TELEGRAM_BOT_TOKEN", "1:a"), ("TELEGRAM_MODE", "push")])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("TELEGRAM_MODE"), "{bad}");
    let bad = config(&[("TELEGRAM_BOT_TOKEN", "1:a"), ("TELEGRAM_MODE", "webhook")])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("TELEGRAM_WEBHOOK_URL"), "{bad}");
    let c = config(&[
        ("TELEGRAM_BOT_TOKEN", "1:a"),
        ("TELEGRAM_MODE", "webhook"),
        (
            "TELEGRAM_WEBHOOK_URL",
            "https://bot.example/channels/telegram/webhook",
        ),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cret_value"),
    ])
    .unwrap()
    .unwrap();
    assert!(matches!(c.mode, TelegramMode::Webhook { .. }));
    assert!(!format!("{c:?}").contains("s3cret_value"));
}

fn message(json: serde_json::Value) -> TgMessage {
    serde_json::from_value(json).unwrap()
}

#[test]
fn messages_become_incoming_messages() {
    let m = incoming(&message(serde_json::json!({
        "message_id": 5, "chat": {"id": -100}, "from": {"id": 7, "first_name": "Ann"},
        "text": "hi", "message_thread_id": 3, "is_topic_message": true,
        "reply_to_message": {"message_id": 4, "chat": {"id": -100}}
    })))
    .unwrap();
    assert_eq!(m.session_key(), "telegram:-100:3");
    assert_eq!(m.message_id, "5");
    assert_eq!(m.sender.display_name.as_deref(), Some("Ann"));
    assert_eq!(m.reply_to.as_deref(), Some("4"));

    let voice = incoming(&message(serde_json::json!({
        "message_id": 6, "chat": {"id": 1},
        "voice": {"file_id": "v", "mime_type": "audio/ogg", "file_size": 10}
    })))
    .unwrap();
    assert_eq!(voice.text, None);
    assert_eq!(voice.attachments[0].kind, AttachmentKind::Audio);
    assert_eq!(voice.attachments[0].id.as_deref(), Some("v"));

    let joined = incoming(&message(serde_json::json!({
        "message_id": 7, "chat": {"id": 1}, "new_chat_members": []
    })));
    assert!(joined.is_none(), "service messages need no answer");
}

#[test]
fn a_journal_of_the_old_format_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let update = |id: i64| serde_json::json!({"update_id": id, "message": {"message_id": id, "chat": {"id": 1}, "text": "hi"}});
    let old = dir.path().join("1.journal");
    let lines = [
        serde_json::json!({"offset": 5, "recent": [3, 4]}),
        serde_json::json!({ "recv": update(5) }),
        serde_json::json!({ "recv": update(6) }),
        serde_json::json!({"done": 5}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&old, text).unwrap();
    let config = TelegramConfig::new(Secret::new("1:a"), dir.path().to_owned());
    let channel = TelegramChannel::new(config.clone()).unwrap();
    assert!(!old.exists(), "the old file is gone");
    let pending = channel.journal.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0], ("6".to_owned(), update(6)));
    assert_eq!(channel.next_offset(), 7);
    assert!(channel.journal.seen("3") && channel.journal.seen("5"));
    drop(channel);
    // And it stays carried over.
    let channel = TelegramChannel::new(config).unwrap();
    assert_eq!(channel.journal.pending_count(), 1);
    assert_eq!(channel.next_offset(), 7);
}

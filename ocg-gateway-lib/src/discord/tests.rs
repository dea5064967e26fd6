use super::*;

const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.SECRET_abcdefghijklmnop";

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<DiscordConfig>, GatewayError> {
    DiscordConfig::from_config(&crate::settings::test_config(pairs))
}

fn channel(allowed: &[&str]) -> DiscordChannel {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DiscordConfig {
        token: Secret::new(TOKEN),
        api_url: DEFAULT_API_URL.into(),
        allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
        state_dir: dir.path().to_owned(),
        backoff: (Duration::from_millis(1), Duration::from_millis(2)),
    };
    config.state_dir = dir.keep();
    DiscordChannel::new(config).unwrap()
}

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no token, no channel");
    let c = config(&[
        ("DISCORD_BOT_TOKEN", &format!("Bot {TOKEN}")),
        (
            "DISCORD_ALLOWED",
            "80351110224678912, channel:1234, guild:99",
        ),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(c.token.expose(), TOKEN, "a pasted `Bot ` prefix is dropped");
    assert_eq!(c.api_url, DEFAULT_API_URL);
    assert_eq!(c.allowed.len(), 3);
    assert_eq!(c.state_dir, PathBuf::from("/srv/ocg/channels"));
    assert!(!format!("{c:?}").contains("SECRET"));
    for (key, value) in [
        ("DISCORD_BOT_TOKEN", "short"),
        ("DISCORD_BOT_TOKEN", "with spaces SECRET inside of it here"),
        ("DISCORD_ALLOWED", "@ann"),
        ("DISCORD_ALLOWED", "room:12"),
        ("DISCORD_API_URL", "http://discord.example.com/api"),
    ] {
        let mut pairs = vec![("DISCORD_BOT_TOKEN", TOKEN)];
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let error = config(&pairs).unwrap_err().to_string();
        assert!(error.contains(key), "{key}={value}: {error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
}

fn origin(sender: &str, channel: &str, guild: Option<&str>, parent: Option<&str>) -> Origin {
    Origin {
        sender: sender.into(),
        channel: channel.into(),
        guild: guild.map(Into::into),
        parent: parent.map(Into::into),
    }
}

#[test]
fn the_allow_list_takes_users_channels_threads_and_guilds() {
    let c = channel(&["1", "channel:20", "guild:300"]);
    assert!(c.allows(&origin("1", "5", None, None)), "a user anywhere");
    assert!(!c.allows(&origin("2", "5", None, None)));
    assert!(c.allows(&origin("2", "20", Some("7"), None)), "a channel");
    assert!(
        c.allows(&origin("2", "21", Some("7"), Some("20"))),
        "a thread of an allowed channel"
    );
    assert!(c.allows(&origin("2", "22", Some("300"), None)), "a guild");
    assert!(!c.allows(&origin("2", "22", Some("301"), Some("23"))));
}

fn message(event: Value) -> DcMessage {
    serde_json::from_value(event).unwrap()
}

#[test]
fn a_message_becomes_the_core_message_without_the_mention() {
    let m = message(json!({
        "id": "111", "channel_id": "222", "guild_id": "333", "type": 19,
        "author": {"id": "444", "username": "ann", "global_name": "Ann"},
        "content": "<@999> what is <@!999> 2+2?",
        "mentions": [{"id": "999", "username": "ocg", "bot": true}],
        "attachments": [{"id": "5", "filename": "a.png", "content_type": "image/png", "size": 10}],
        "message_reference": {"message_id": "100"},
    }));
    let core = incoming(&m, "999").unwrap();
    assert_eq!(core.text.as_deref(), Some("what is  2+2?"));
    assert_eq!(core.session_key(), "discord:222");
    assert_eq!(core.sender.display_name.as_deref(), Some("Ann"));
    assert_eq!(core.attachments[0].kind, AttachmentKind::Image);
    assert_eq!(core.reply_to.as_deref(), Some("100"));
    let record = to_record(&core, &origin("444", "222", Some("333"), None));
    let (back, origin_back) = from_record(&record).unwrap();
    assert_eq!(back.message_id, "111");
    assert_eq!(origin_back, origin("444", "222", Some("333"), None));

    let empty = message(json!({
        "id": "1", "channel_id": "2", "author": {"id": "3"}, "content": "<@999>",
    }));
    assert!(
        incoming(&empty, "999").is_none(),
        "only a mention: nothing to answer"
    );
}

use super::*;

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<MatrixConfig>, GatewayError> {
    MatrixConfig::from_config(&crate::settings::test_config(pairs))
}

const BASE: [(&str, &str); 3] = [
    ("MATRIX_HOMESERVER", "https://matrix.example.org/"),
    ("MATRIX_USER_ID", "@ocg:example.org"),
    ("MATRIX_PASSWORD", "hunter2 SECRET"),
];

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no homeserver, no channel");
    let c = config(&BASE).unwrap().unwrap();
    assert_eq!(c.homeserver, "https://matrix.example.org");
    assert_eq!(c.user_id, "@ocg:example.org");
    assert!(matches!(&c.auth, MatrixAuth::Password(p) if p.expose() == "hunter2 SECRET"));
    assert_eq!(c.state_dir, PathBuf::from("/srv/ocg/channels"));
    assert!(
        !format!("{c:?}").contains("SECRET"),
        "the password is redacted"
    );

    let mut pairs = BASE.to_vec();
    pairs.push(("MATRIX_ACCESS_TOKEN", "syt_token_SECRET"));
    pairs.push((
        "MATRIX_ALLOWED",
        "@ann:example.org, @*:friends.example, !room:example.org",
    ));
    let c = config(&pairs).unwrap().unwrap();
    assert!(matches!(&c.auth, MatrixAuth::Token(_)), "a token wins");
    assert_eq!(c.allowed.len(), 3);
    assert!(
        config(&[
            ("MATRIX_HOMESERVER", "http://127.0.0.1:8008"),
            ("MATRIX_USER_ID", "@ocg:localhost"),
            ("MATRIX_ACCESS_TOKEN", "t"),
        ])
        .unwrap()
        .is_some(),
        "plain http to this machine is fine"
    );

    for (key, value) in [
        ("MATRIX_HOMESERVER", "matrix.example.org"),
        ("MATRIX_HOMESERVER", "http://matrix.example.org"),
        ("MATRIX_USER_ID", "ocg"),
        ("MATRIX_USER_ID", "@ocg"),
        ("MATRIX_ALLOWED", "ann"),
        ("MATRIX_ALLOWED", "#alias:example.org"),
        ("MATRIX_ACCESS_TOKEN", "two words"),
    ] {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let error = config(&pairs).unwrap_err().to_string();
        assert!(error.contains(key), "{key}={value}: {error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
    let error = config(&BASE[..2]).unwrap_err().to_string();
    assert!(
        error.contains("MATRIX_ACCESS_TOKEN") && error.contains("MATRIX_PASSWORD"),
        "{error}"
    );
}

fn channel(allowed: &str, dir: &std::path::Path) -> MatrixChannel {
    let mut pairs = BASE.to_vec();
    pairs.push(("MATRIX_ALLOWED", allowed));
    let c = config(&pairs).unwrap().unwrap();
    MatrixChannel::new(MatrixConfig {
        state_dir: dir.to_owned(),
        ..c
    })
    .unwrap()
}

#[test]
fn users_servers_and_rooms_are_allowed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let channel = channel(
        "@ann:example.org,@*:friends.example,!open:example.org",
        dir.path(),
    );
    assert!(channel.allows("@ann:example.org", "!any:example.org"));
    assert!(!channel.allows("@ann:example.org.evil", "!any:example.org"));
    assert!(channel.allows("@bob:friends.example", "!any:example.org"));
    assert!(
        !channel.allows("@bob:notfriends.example", "!any:example.org"),
        "the whole server name, not a suffix of it"
    );
    assert!(channel.allows("@eve:evil.example", "!open:example.org"));
    assert!(!channel.allows("@eve:evil.example", "!any:example.org"));
    assert_eq!(channel.status().state, ChannelState::Stopped);
}

#[test]
fn a_kept_login_is_used_only_for_its_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let channel = channel("", dir.path());
    assert!(channel.saved_login().is_none());
    channel.save_login(&api::Login {
        user_id: "@ocg:example.org".into(),
        device_id: "DEV".into(),
        access_token: Secret::new("syt_kept"),
    });
    let (device, token) = channel.saved_login().unwrap();
    assert_eq!((device.as_str(), token.expose()), ("DEV", "syt_kept"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("matrix.session"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    channel.save_login(&api::Login {
        user_id: "@other:example.org".into(),
        device_id: "DEV".into(),
        access_token: Secret::new("syt_other"),
    });
    assert!(channel.saved_login().is_none(), "another user's login");
}

#[test]
fn replies_carry_html_with_line_breaks_and_stay_in_their_thread() {
    let content = message_content(
        "**Paris**\nis the capital\n```\na\nb\n```",
        TextFormat::Markdown,
        false,
        &ChatTarget::chat("!r:x"),
        None,
    );
    assert_eq!(content["msgtype"], "m.text");
    assert_eq!(content["body"], "**Paris**\nis the capital\n```\na\nb\n```");
    assert_eq!(content["format"], "org.matrix.custom.html");
    assert_eq!(
        content["formatted_body"],
        "<b>Paris</b><br>is the capital<br><pre>a\nb</pre>"
    );
    let plain = message_content(
        "hi",
        TextFormat::Markdown,
        true,
        &ChatTarget::chat("!r:x"),
        None,
    );
    assert_eq!(plain["msgtype"], "m.notice");
    assert!(
        plain.get("formatted_body").is_none(),
        "no HTML when it adds nothing"
    );
    let threaded = message_content(
        "hi",
        TextFormat::Plain,
        false,
        &ChatTarget {
            chat_id: "!r:x".into(),
            thread_id: Some("$root".into()),
        },
        None,
    );
    assert_eq!(threaded["m.relates_to"]["rel_type"], "m.thread");
    assert_eq!(threaded["m.relates_to"]["event_id"], "$root");
    let huge = "<".repeat(PIECE_LIMIT);
    let content = message_content(
        &huge,
        TextFormat::Markdown,
        false,
        &ChatTarget::chat("!r:x"),
        None,
    );
    assert!(
        content.get("formatted_body").is_none(),
        "too big with its HTML: sent as text"
    );
}

#[test]
fn journal_records_round_trip() {
    let event = RoomEvent {
        room: "!r:x".into(),
        event_id: "$e".into(),
        sender: "@ann:x".into(),
        content: Content::Text {
            body: "hi".into(),
            reply_to: None,
            thread: Some("$t".into()),
        },
    };
    let received = received(&event).unwrap();
    assert_eq!(received.message.session_key(), "matrix:!r:x:$t");
    let back = Received::from_record(&received.to_record()).unwrap();
    assert_eq!(back.message, received.message);
    assert_eq!((back.sender, back.room), (received.sender, received.room));
    assert!(Received::from_record(&json!({"x": 1})).is_none());
}

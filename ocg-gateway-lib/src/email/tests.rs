use super::*;

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<EmailConfig>, GatewayError> {
    EmailConfig::from_config(&crate::settings::test_config(pairs))
}

const BASE: [(&str, &str); 4] = [
    ("EMAIL_IMAP_SERVER", "imap.example.org"),
    ("EMAIL_SMTP_SERVER", "smtp.example.org:587"),
    ("EMAIL_USERNAME", "ocg@example.org"),
    ("EMAIL_PASSWORD", "hunter2 SECRET"),
];

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no IMAP server, no channel");
    let c = config(&BASE).unwrap().unwrap();
    assert_eq!(c.imap, ("imap.example.org".into(), 993));
    assert_eq!(c.smtp, ("smtp.example.org".into(), 587));
    assert_eq!(
        c.from, "ocg@example.org",
        "the user name when it is an address"
    );
    assert_eq!(c.imap_security(), Security::Tls);
    assert!(
        !format!("{c:?}").contains("SECRET"),
        "the password is redacted"
    );

    let mut pairs = BASE.to_vec();
    pairs.push(("EMAIL_ALLOWED", "Ann@Example.org, @friends.example"));
    pairs.push(("EMAIL_IMAP_SERVER", "imap.example.org:143"));
    let c = config(&pairs[1..]).unwrap().unwrap();
    assert_eq!(c.allowed, ["ann@example.org", "@friends.example"]);
    assert_eq!(c.imap_security(), Security::StartTls);

    let local = config(&[
        ("EMAIL_IMAP_SERVER", "127.0.0.1:1143"),
        ("EMAIL_SMTP_SERVER", "localhost:2525"),
        ("EMAIL_USERNAME", "ocg"),
        ("EMAIL_PASSWORD", "x"),
        ("EMAIL_FROM", "ocg@localhost"),
        ("EMAIL_TLS", "false"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(local.imap_security(), Security::Plain);

    for (key, value) in [
        ("EMAIL_IMAP_SERVER", "user@imap.example.org"),
        ("EMAIL_SMTP_SERVER", "smtp.example.org:0"),
        ("EMAIL_FROM", "not an address"),
        ("EMAIL_ALLOWED", "ann"),
        ("EMAIL_TLS", "false"),
        ("EMAIL_TLS", "maybe"),
    ] {
        let mut pairs = BASE.to_vec();
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let error = config(&pairs).unwrap_err().to_string();
        let named = if value == "false" {
            "EMAIL_IMAP_SERVER"
        } else {
            key
        };
        assert!(error.contains(named), "{key}={value}: {error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
    for missing in ["EMAIL_SMTP_SERVER", "EMAIL_USERNAME", "EMAIL_PASSWORD"] {
        let pairs: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let error = config(&pairs).unwrap_err().to_string();
        assert!(error.contains(missing), "{error}");
    }
    let mut pairs = BASE.to_vec();
    pairs[2] = ("EMAIL_USERNAME", "ocg");
    assert!(
        config(&pairs)
            .unwrap_err()
            .to_string()
            .contains("EMAIL_FROM")
    );
}

fn channel(dir: &std::path::Path) -> EmailChannel {
    let mut pairs = BASE.to_vec();
    pairs.push(("EMAIL_ALLOWED", "ann@example.org,@friends.example"));
    let c = config(&pairs).unwrap().unwrap();
    EmailChannel::new(EmailConfig {
        state_dir: dir.to_owned(),
        ..c
    })
    .unwrap()
}

#[test]
fn addresses_and_domains_are_allowed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let channel = channel(dir.path());
    assert!(channel.allows("ann@example.org"));
    assert!(channel.allows("bob@friends.example"));
    assert!(!channel.allows("bob@notfriends.example"));
    assert!(!channel.allows("bob@sub.friends.example"));
    assert!(!channel.allows("eve@example.org"));
    assert_eq!(channel.status().state, ChannelState::Stopped);
}

#[test]
fn answers_are_threaded_replies_with_text_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let channel = channel(dir.path());
    let thread = Thread {
        message_id: Some("m2@example.org".into()),
        references: vec!["m1@example.org".into()],
        subject: "Plans".into(),
    };
    let target = EmailChannel::target("ann@example.org", &thread);
    assert_eq!(target.thread_id.as_deref(), Some("m1@example.org"));
    channel.remember(&target, &thread);
    let (mail, id) = channel
        .compose(&OutgoingMessage {
            target,
            text: "**Yes**\nat noon".into(),
            format: TextFormat::Markdown,
            reply_to: None,
        })
        .unwrap();
    let raw = String::from_utf8(mail.formatted()).unwrap();
    assert!(raw.contains("Subject: Re: Plans"), "{raw}");
    assert!(raw.contains("In-Reply-To: <m2@example.org>"), "{raw}");
    assert!(
        raw.contains("References: <m1@example.org> <m2@example.org>"),
        "{raw}"
    );
    assert!(raw.contains(&format!("Message-ID: <{id}>")), "{raw}");
    assert!(raw.contains("Auto-Submitted: auto-replied"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("<b>Yes</b><br>at noon"), "{raw}");
    assert!(id.ends_with("@example.org"));

    let (mail, _) = channel
        .compose(&OutgoingMessage {
            target: ChatTarget::chat("bob@friends.example"),
            text: "You are approved".into(),
            format: TextFormat::Plain,
            reply_to: None,
        })
        .unwrap();
    let raw = String::from_utf8(mail.formatted()).unwrap();
    assert!(
        raw.contains("Subject: A message from your OCG assistant"),
        "{raw}"
    );
    assert!(!raw.contains("In-Reply-To"), "{raw}");
}

#[test]
fn journal_records_round_trip() {
    let received = Received {
        message: IncomingMessage::text("email", "ann@example.org", "ann@example.org", "hi"),
        from: "ann@example.org".into(),
        thread: Thread {
            message_id: Some("m@x".into()),
            references: vec![],
            subject: "s".into(),
        },
    };
    let back = Received::from_record(&received.to_record()).unwrap();
    assert_eq!(back.message, received.message);
    assert_eq!((back.from, back.thread), (received.from, received.thread));
    assert!(Received::from_record(&json!({"x": 1})).is_none());
}

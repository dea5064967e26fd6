use super::*;

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<IrcConfig>, GatewayError> {
    IrcConfig::from_config(&crate::settings::test_config(pairs))
}

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no server, no channel");
    let c = config(&[("IRC_SERVER", "irc.libera.chat")])
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.host.as_str(), c.port, c.tls),
        ("irc.libera.chat", 6697, true)
    );
    assert_eq!(c.nick, "ocg");
    assert_eq!(c.state_dir, PathBuf::from("/srv/ocg/channels"));
    let c = config(&[
        ("IRC_SERVER", "127.0.0.1:6667"),
        ("IRC_TLS", "false"),
        ("IRC_NICK", "helper_bot"),
        ("IRC_PASSWORD", "hunter2-SECRET"),
        ("IRC_CHANNELS", "#ocg, &local"),
        ("IRC_ALLOWED", "ann!*@127.0.0.1, account:bob"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!((c.port, c.tls), (6667, false));
    assert_eq!(c.channels, ["#ocg", "&local"]);
    assert_eq!(c.allowed, ["ann!*@127.0.0.1", "account:bob"]);
    assert!(
        !format!("{c:?}").contains("SECRET"),
        "the password is redacted"
    );
    for (key, value) in [
        ("IRC_SERVER", "irc.example:0"),
        ("IRC_SERVER", "user@irc.example"),
        ("IRC_NICK", "9lives"),
        ("IRC_NICK", "has space"),
        ("IRC_CHANNELS", "ocg"),
        ("IRC_ALLOWED", "ann"),
        ("IRC_TLS", "maybe"),
    ] {
        let pairs = [("IRC_SERVER", "irc.example"), (key, value)];
        let error = config(&pairs).unwrap_err().to_string();
        assert!(error.contains(key), "{key}={value}: {error}");
    }
}

#[test]
fn masks_and_accounts_are_allowed_and_nothing_else() {
    let c = config(&[
        ("IRC_SERVER", "irc.example"),
        ("IRC_ALLOWED", "ann!*@trusted.example,account:Bob"),
    ])
    .unwrap()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let channel = IrcChannel::new(IrcConfig {
        state_dir: dir.path().to_owned(),
        ..c
    })
    .unwrap();
    assert!(channel.allows("ann!~a@trusted.example", None));
    assert!(
        !channel.allows("ann!~a@elsewhere.example", None),
        "the nick alone is not enough"
    );
    assert!(channel.allows("anyone!x@y", Some("bob")));
    assert!(
        !channel.allows("bob!x@y", None),
        "the account, not the nick"
    );
    assert_eq!(channel.status().state, ChannelState::Stopped);
}

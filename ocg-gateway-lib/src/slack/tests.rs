use super::*;

fn config(pairs: &[(&str, &str)]) -> std::result::Result<Option<SlackConfig>, GatewayError> {
    SlackConfig::from_config(&crate::settings::test_config(pairs))
}

const BOT: &str = "xoxb-1234-5678-SECRETabcdef";
const APP: &str = "xapp-1-A111-222-SECRETabcdef";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";

#[test]
fn config_is_read_and_validated() {
    assert!(config(&[]).unwrap().is_none(), "no bot token, no channel");
    let c = config(&[("SLACK_BOT_TOKEN", BOT), ("SLACK_APP_TOKEN", APP)])
        .unwrap()
        .unwrap();
    assert!(matches!(c.mode, SlackMode::Socket { .. }));
    assert_eq!(c.api_url, DEFAULT_API_URL);
    assert!(!format!("{c:?}").contains("SECRET"));
    let c = config(&[
        ("SLACK_BOT_TOKEN", BOT),
        ("SLACK_SIGNING_SECRET", SIGNING),
        ("SLACK_ALLOWED", "U012AB3CD, C0123456"),
    ])
    .unwrap()
    .unwrap();
    assert!(matches!(c.mode, SlackMode::Events { .. }));
    assert_eq!(c.allowed, vec!["U012AB3CD", "C0123456"]);
    let error = config(&[("SLACK_BOT_TOKEN", BOT)]).unwrap_err().to_string();
    assert!(
        error.contains("SLACK_APP_TOKEN") && error.contains("SLACK_SIGNING_SECRET"),
        "{error}"
    );
    for (key, value) in [
        ("SLACK_BOT_TOKEN", "xoxp-user-SECRET-token-1234"),
        ("SLACK_APP_TOKEN", "xoxb-1234-5678-SECRETabcdef"),
        ("SLACK_ALLOWED", "ann"),
        ("SLACK_API_URL", "http://slack.example.com/api"),
    ] {
        let mut pairs = vec![("SLACK_BOT_TOKEN", BOT), ("SLACK_APP_TOKEN", APP)];
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        let error = config(&pairs).unwrap_err().to_string();
        assert!(error.contains(key), "{key}={value}: {error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
}

fn request(timestamp: &str, signature: &str, body: &str) -> WebhookRequest {
    WebhookRequest {
        headers: vec![
            ("x-slack-request-timestamp".into(), timestamp.into()),
            ("x-slack-signature".into(), signature.into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn signatures_are_checked_with_the_replay_window() {
    // Slack's own worked example (api.slack.com/authentication/verifying-requests-from-slack).
    let secret = Secret::new(SIGNING);
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let good = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    let at = 1_531_420_618;
    assert_eq!(
        signed(&request("1531420618", good, body), &secret, at),
        Ok(())
    );
    assert_eq!(
        signed(
            &request("1531420618", good, body),
            &secret,
            at + REPLAY_WINDOW_SECS + 1
        ),
        Err("the request is older than five minutes (a replay?)")
    );
    assert!(
        signed(
            &request("1531420618", good, &format!("{body}x")),
            &secret,
            at
        )
        .is_err()
    );
    assert!(signed(&request("1531420618", "v0=00", body), &secret, at).is_err());
    assert!(signed(&request("", good, body), &secret, at).is_err());
}

fn identity() -> Identity {
    Identity {
        user_id: "UBOT".into(),
    }
}

fn event(value: Value) -> SlackEvent {
    serde_json::from_value(value).unwrap()
}

#[test]
fn direct_messages_and_mentions_are_answered_bots_and_edits_are_not() {
    let dm = event(
        json!({"type": "message", "channel_type": "im", "channel": "D1",
        "user": "U1", "text": "hello", "ts": "1.000100"}),
    );
    let found = answerable(&dm, &identity()).unwrap();
    assert!(found.direct);
    assert_eq!(found.key, "D1/1.000100");
    assert_eq!(found.received.message.session_key(), "slack:D1");

    let mention = event(json!({"type": "app_mention", "channel": "C1", "user": "U1",
        "text": "<@UBOT> what now?", "ts": "2.0", "thread_ts": "1.5"}));
    let found = answerable(&mention, &identity()).unwrap();
    assert!(!found.direct);
    assert_eq!(found.received.message.text.as_deref(), Some("what now?"));
    assert_eq!(
        found.received.message.session_key(),
        "slack:C1:1.5",
        "a thread is its own session"
    );

    for ignored in [
        json!({"type": "message", "channel_type": "channel", "channel": "C1", "user": "U1", "text": "<@UBOT> x", "ts": "3"}),
        json!({"type": "message", "channel_type": "im", "channel": "D1", "bot_id": "B2", "text": "x", "ts": "4"}),
        json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "UBOT", "text": "x", "ts": "5"}),
        json!({"type": "message", "subtype": "message_changed", "channel_type": "im", "channel": "D1", "ts": "6"}),
        json!({"type": "reaction_added", "user": "U1"}),
    ] {
        assert!(
            answerable(&event(ignored.clone()), &identity()).is_none(),
            "{ignored}"
        );
    }
}

#[test]
fn replies_are_mrkdwn_with_a_plain_fallback_in_their_thread() {
    let target = ChatTarget {
        chat_id: "C1".into(),
        thread_id: Some("1.5".into()),
    };
    let body = post_body(&target, "**hi** <you>", TextFormat::Markdown);
    assert_eq!(body["thread_ts"], "1.5");
    assert_eq!(body["blocks"][0]["text"]["text"], "*hi* &lt;you&gt;");
    assert_eq!(body["text"], "**hi** &lt;you&gt;");
    let plain = post_body(&ChatTarget::chat("D1"), "a & b", TextFormat::Plain);
    assert!(plain.get("blocks").is_none());
    assert_eq!(plain["text"], "a &amp; b");
    assert!(plain.get("thread_ts").is_none());
}

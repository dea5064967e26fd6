//! The Slack channel end to end: the real agent and gateway binaries, a
//! fake model and a fake Slack (Web API and Socket Mode); the Events API
//! through the gateway's webhook route with signed requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use ocg_tests::fake_llm::Script;
use ocg_tests::fake_slack::{self, FakeSlack, dm_channel};
use ocg_tests::wait_until;

use crate::telegram::{Bot, LIMIT, request};

const BOT_TOKEN: &str = "xoxb-1111-2222-SECRETbottoken";
const APP_TOKEN: &str = "xapp-1-A0001-3333-SECRETapptoken";
const SIGNING_SECRET: &str = "5ecret0f5igningABCDEF0123456789";
const ANN: &str = "UANN00001";
const STRANGER: &str = "USTRANGE1";
const TEAM_CHANNEL: &str = "CTEAM0001";

fn start(slack: &FakeSlack, socket_mode: bool) -> Bot {
    let mut settings = vec![
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
        ("SLACK_ALLOWED", "UANN00001, CTEAM0001"),
    ];
    settings.push(if socket_mode {
        ("SLACK_APP_TOKEN", APP_TOKEN)
    } else {
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    });
    let bot = Bot::start_with(&settings, false);
    assert!(
        wait_until(LIMIT, || bot.channels()[0]["state"] == "connected"),
        "{}\n{}",
        bot.channels(),
        bot.log()
    );
    bot
}

#[test]
fn socket_mode_survives_a_disconnect_and_a_redelivery_answering_each_message_once() {
    let slack = fake_slack::start(BOT_TOKEN, APP_TOKEN);
    let bot = start(&slack, true);
    assert_eq!(bot.channels()[0]["mode"], "socket_mode");
    let dm = dm_channel(ANN);
    slack.push_dm(ANN, "one");
    assert!(
        slack.wait(LIMIT, |s| s.texts_to(&dm).len() == 1),
        "{}",
        bot.log()
    );
    assert_eq!(slack.unacked(), 0, "every envelope is acknowledged");

    // Slack refreshes the connection mid-conversation (and the first new
    // ticket is refused); a message sent meanwhile comes on the new one.
    slack.refuse_upgrades(1);
    slack.disconnect("refresh_requested");
    slack.push_dm(ANN, "two");
    assert!(
        slack.wait(LIMIT, |s| s.texts_to(&dm).len() == 2),
        "{:?}\n{}",
        slack.posted(),
        bot.log()
    );
    assert!(slack.connections() >= 2);

    // A redelivered envelope (same event, retry_attempt 1): acknowledged,
    // not answered again.
    slack.redeliver_last();
    assert!(slack.wait(LIMIT, |s| s.unacked() == 0));
    slack.push_dm(ANN, "three");
    assert!(slack.wait(LIMIT, |s| s.texts_to(&dm).len() == 3));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        slack.texts_to(&dm),
        ["echo: one", "echo: two", "echo: three"],
        "each once, in order"
    );

    // A mention in a thread of an allowed channel: answered in the thread,
    // with mrkdwn and a plain fallback; a stranger's mention elsewhere is not.
    bot.vendor.push(Script::Text(
        "**Sure**: see [docs](https://example.org)".into(),
    ));
    let thread = "1700000000.000001";
    let asked = slack.push_mention(STRANGER, TEAM_CHANNEL, "help here", Some(thread));
    slack.push_mention(STRANGER, "COTHER001", "and here", None);
    assert!(
        slack.wait(LIMIT, |s| s.texts_to(TEAM_CHANNEL).len() == 1),
        "{}",
        bot.log()
    );
    let reply = slack
        .posted()
        .into_iter()
        .find(|p| p.channel == TEAM_CHANNEL)
        .unwrap();
    assert_eq!(
        reply.thread_ts.as_deref(),
        Some(thread),
        "the reply stays in the thread"
    );
    assert_eq!(
        reply.body["blocks"][0]["text"]["text"],
        "*Sure*: see <https://example.org|docs>"
    );
    assert_eq!(reply.text, "**Sure**: see [docs](https://example.org)");
    assert!(slack.texts_to("COTHER001").is_empty());
    assert!(bot.never_saw("and here"));
    // The :eyes: reaction shows the work, and goes with the reply.
    let on_asked = || -> Vec<String> {
        slack
            .reactions()
            .into_iter()
            .filter(|(_, _, ts)| *ts == asked)
            .map(|(method, _, _)| method)
            .collect()
    };
    assert!(
        wait_until(LIMIT, || on_asked().len() == 2),
        "{:?}",
        slack.reactions()
    );
    assert_eq!(on_asked(), ["reactions.add", "reactions.remove"]);

    // A stranger's DM gets a pairing code only.
    slack.push_dm(STRANGER, "let me in");
    let stranger = dm_channel(STRANGER);
    assert!(slack.wait(LIMIT, |s| s.texts_to(&stranger).len() == 1));
    assert!(slack.texts_to(&stranger)[0].contains("pairing code"));
    bot.approve_the_request("slack", STRANGER);
    slack.push_dm(STRANGER, "hello now");
    assert!(slack.wait(LIMIT, |s| s.texts_to(&stranger).len() == 3));
    assert!(wait_until(LIMIT, || bot.channels()[0]["pending"] == 0));
    let log = bot.log();
    assert!(
        log.contains("answered 403"),
        "the refused upgrade is logged: {log}"
    );
    assert!(
        !log.contains("SECRET") && !log.contains("secret-ticket"),
        "no token or ticket is logged"
    );
}

#[test]
fn a_rate_limited_long_reply_arrives_split_in_order_after_retry_after() {
    let slack = fake_slack::start(BOT_TOKEN, APP_TOKEN);
    let bot = start(&slack, true);
    let long: String = (0..4)
        .map(|n| format!("Part {n}: {}", "word ".repeat(260)))
        .collect::<Vec<_>>()
        .join("\n\n");
    bot.vendor.push(Script::Text(long.clone()));
    slack.rate_limit("chat.postMessage", 1, 1);
    let dm = dm_channel(ANN);
    let asked = std::time::Instant::now();
    slack.push_dm(ANN, "tell me a lot");
    assert!(
        slack.wait(LIMIT, |s| s.texts_to(&dm).len() >= 2),
        "{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let posted: Vec<_> = slack.posted();
    assert!(posted.len() >= 2);
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let joined = posted
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(words(&joined), words(&long), "nothing lost, in order");
    assert!(posted.iter().all(|p| {
        p.body["blocks"][0]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.chars().count() <= 3000)
    }));
    assert_eq!(slack.early_requests(), 0, "nothing sent before Retry-After");
    assert!(posted[0].at.duration_since(asked) >= Duration::from_secs(1));
}

fn sign(timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

#[test]
fn the_events_api_refuses_unsigned_and_replayed_requests_and_answers_once() {
    let slack = fake_slack::start(BOT_TOKEN, APP_TOKEN);
    let bot = start(&slack, false);
    assert_eq!(bot.channels()[0]["mode"], "events_api");
    let url = format!("{}/channels/slack/webhook", bot.install.gateway_url());
    let post =
        |body: &str, headers: &[(&str, &str)]| request("POST", &url, headers, body.as_bytes());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // The URL check Slack makes when the request URL is saved.
    let challenge = r#"{"type":"url_verification","token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let stamp = now.to_string();
    let (status, body) = post(
        challenge,
        &[
            ("X-Slack-Request-Timestamp", &stamp),
            ("X-Slack-Signature", &sign(now, challenge)),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"));

    let (_, event) = slack.message_event("message", ANN, &dm_channel(ANN), "signed hello", None);
    let payload = slack.callback(event).to_string();
    // Unsigned, wrongly signed, and replayed (an old timestamp, signed
    // correctly): refused before anything is read.
    let old = now - 600;
    let (old_stamp, old_signature) = (old.to_string(), sign(old, &payload));
    for headers in [
        vec![],
        vec![
            ("X-Slack-Request-Timestamp", stamp.as_str()),
            ("X-Slack-Signature", "v0=deadbeef"),
        ],
        vec![
            ("X-Slack-Request-Timestamp", old_stamp.as_str()),
            ("X-Slack-Signature", old_signature.as_str()),
        ],
    ] {
        let (status, body) = post(&payload, &headers);
        assert_eq!(status, 401, "{headers:?}: {body}");
    }
    assert!(
        bot.never_saw("signed hello"),
        "nothing of a refused request is read"
    );

    // Signed: answered; Slack's retry of it (X-Slack-Retry-Num) is not.
    let signature = sign(now, &payload);
    let headers = [
        ("X-Slack-Request-Timestamp", stamp.as_str()),
        ("X-Slack-Signature", signature.as_str()),
    ];
    assert_eq!(post(&payload, &headers).0, 200);
    let dm = dm_channel(ANN);
    assert!(
        slack.wait(LIMIT, |s| s.texts_to(&dm).len() == 1),
        "{}",
        bot.log()
    );
    let mut retried = headers.to_vec();
    retried.push(("X-Slack-Retry-Num", "1"));
    retried.push(("X-Slack-Retry-Reason", "http_timeout"));
    assert_eq!(post(&payload, &retried).0, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(slack.texts_to(&dm), ["echo: signed hello"], "answered once");
}

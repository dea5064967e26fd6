//! The email channel end to end: real mail servers (Debian's Dovecot for
//! IMAP, aiosmtpd from PyPI for SMTP), people who send by SMTP and read
//! what they received, and the real agent and gateway with a fake model.

use std::time::Duration;

use mail_parser::MessageParser;
use ocg_tests::fake_llm::Script;
use ocg_tests::mail_server::MailServers;
use ocg_tests::wait_until;

use crate::telegram::{Bot, LIMIT, pairs};

/// A mail someone received, read.
#[derive(Debug)]
struct Got {
    from: String,
    subject: String,
    in_reply_to: Option<String>,
    references: Vec<String>,
    text: String,
    html: Option<String>,
}

fn got(servers: &MailServers, user: &str) -> Vec<Got> {
    servers
        .received(user)
        .iter()
        .filter_map(|raw| {
            let m = MessageParser::default().parse(raw)?;
            Some(Got {
                from: m.from()?.first()?.address()?.to_owned(),
                subject: m.subject().unwrap_or_default().to_owned(),
                in_reply_to: m.in_reply_to().as_text().map(str::to_owned),
                references: m
                    .references()
                    .as_text_list()
                    .map(|l| l.iter().map(|r| r.to_string()).collect())
                    .unwrap_or_default(),
                text: m.body_text(0)?.trim().to_owned(),
                html: m.body_html(0).map(|h| h.into_owned()),
            })
        })
        .collect()
}

fn wait_for(servers: &MailServers, user: &str, count: usize, bot: &Bot) -> Vec<Got> {
    assert!(
        wait_until(Duration::from_secs(30), || got(servers, user).len()
            >= count),
        "{user} receives {count} mail(s): got {:?}\n{}",
        got(servers, user),
        bot.log()
    );
    got(servers, user)
}

fn email_settings(servers: &MailServers, allowed: &str) -> Vec<(String, String)> {
    [
        (
            "EMAIL_IMAP_SERVER",
            format!("127.0.0.1:{}", servers.imap_port),
        ),
        (
            "EMAIL_SMTP_SERVER",
            format!("127.0.0.1:{}", servers.smtp_port),
        ),
        ("EMAIL_USERNAME", "ocg".into()),
        ("EMAIL_PASSWORD", "ocg-password".into()),
        ("EMAIL_FROM", "ocg@localhost".into()),
        ("EMAIL_TLS", "false".into()),
        ("EMAIL_ALLOWED", allowed.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn start_bot(servers: &MailServers, allowed: &str) -> Bot {
    let bot = Bot::start_with(&pairs(&email_settings(servers, allowed)), false);
    bot.wait_state(LIMIT, true, "the channel connects");
    bot
}

fn mail(from: &str, id: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\nTo: ocg@localhost\nSubject: {subject}\nMessage-ID: <{id}>\n{extra}\
         Content-Type: text/plain; charset=utf-8\n\n{body}\n"
    )
}

#[test]
fn allowed_people_are_answered_in_their_thread_strangers_pair_and_forgeries_are_ignored() {
    let servers = MailServers::start(&["ocg", "ann", "eve"]);
    // Mail already in the inbox at the first start is not answered.
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail("ann@localhost", "old@localhost", "Old", "", "from before"),
    );
    let bot = start_bot(&servers, "ann@localhost");
    let ann = "Ann <ann@localhost>";

    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail(ann, "a1@localhost", "Hello there", "", "hello"),
    );
    let replies = wait_for(&servers, "ann", 1, &bot);
    let first = &replies[0];
    assert_eq!(first.from, "ocg@localhost");
    assert_eq!(first.subject, "Re: Hello there");
    assert_eq!(first.in_reply_to.as_deref(), Some("a1@localhost"));
    assert_eq!(first.text, "echo: hello");
    assert!(first.html.is_some(), "text and HTML");

    // A reply in the thread, quoting the answer: the same session, and
    // the model sees only the new text.
    let answer_id = servers.received("ann")[0].clone();
    let answer_id = MessageParser::default()
        .parse(&answer_id)
        .unwrap()
        .message_id()
        .unwrap()
        .to_owned();
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail(
            ann,
            "a2@localhost",
            "Re: Hello there",
            &format!("In-Reply-To: <{answer_id}>\nReferences: <a1@localhost> <{answer_id}>\n"),
            "and then?\n\nOn Wed, 2 Dec 2026, OCG <ocg@localhost> wrote:\n> echo: hello\n",
        ),
    );
    let replies = wait_for(&servers, "ann", 2, &bot);
    assert_eq!(replies[1].text, "echo: and then?");
    assert_eq!(
        replies[1].references,
        ["a1@localhost", answer_id.as_str(), "a2@localhost"]
    );
    let last = bot.vendor.requests().last().unwrap().to_string();
    assert!(
        last.contains("and then?") && last.contains("hello"),
        "{last}"
    );
    assert!(!last.contains("wrote:"), "the quote is stripped: {last}");
    assert!(
        !bot.vendor
            .requests()
            .iter()
            .any(|r| r.to_string().contains("from before")),
        "mail from before the first start is not answered"
    );

    // A long answer arrives whole in one mail.
    let long: String = (0..3000)
        .map(|n| format!("mot{n:04}-é✓"))
        .collect::<Vec<_>>()
        .join(" ");
    bot.vendor.push(Script::Text(long.clone()));
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail(ann, "a3@localhost", "Lots", "", "tell me a lot"),
    );
    let replies = wait_for(&servers, "ann", 3, &bot);
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(&replies[2].text), words(&long), "whole and in order");

    // Forged (per the receiving server) and automatic mail is never answered.
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail(
            ann,
            "f1@localhost",
            "Forged",
            "Authentication-Results: mx.localhost; dmarc=fail header.from=localhost\n",
            "forged text",
        ),
    );
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail(
            ann,
            "v1@localhost",
            "Out of office",
            "Auto-Submitted: auto-replied\n",
            "vacation text",
        ),
    );

    // A stranger gets one code and nothing else, until approved.
    let eve = "eve@localhost";
    servers.send(
        eve,
        "ocg@localhost",
        &mail(eve, "e1@localhost", "Hi", "", "let me in"),
    );
    let told = wait_for(&servers, "eve", 1, &bot);
    assert!(told[0].text.contains("pairing code"), "{}", told[0].text);
    assert_eq!(told[0].subject, "Re: Hi");
    servers.send(
        eve,
        "ocg@localhost",
        &mail(eve, "e2@localhost", "Hi", "", "please"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(got(&servers, "eve").len(), 1, "one code only");
    assert_eq!(
        got(&servers, "ann").len(),
        3,
        "no answer to forged or automatic mail"
    );
    for text in ["let me in", "forged text", "vacation text"] {
        assert!(
            bot.never_saw(text),
            "{text:?} reaches neither the model nor the log"
        );
    }
    assert!(bot.log().contains("dmarc=fail"), "the forgery is logged");
    let code = bot.approve_the_request("email", "eve@localhost");
    assert!(told[0].text.contains(&code));
    let told = wait_for(&servers, "eve", 2, &bot);
    assert!(told[1].text.contains("approved"), "{}", told[1].text);
    assert_eq!(
        told[1].in_reply_to.as_deref(),
        Some("e1@localhost"),
        "in the thread"
    );
    servers.send(
        eve,
        "ocg@localhost",
        &mail(eve, "e3@localhost", "Hi", "", "now?"),
    );
    let told = wait_for(&servers, "eve", 3, &bot);
    assert_eq!(told[2].text, "echo: now?");
    let config = std::fs::read_to_string(bot.install.path("env.config")).unwrap();
    assert!(
        config.contains("EMAIL_ALLOWED=ann@localhost,eve@localhost"),
        "{config}"
    );
    assert_eq!(bot.channels()[0]["state"], "connected");
}

#[test]
fn a_gateway_killed_mid_turn_and_a_server_that_goes_away_lose_nothing() {
    let mut servers = MailServers::start(&["ocg", "ann"]);
    let mut bot = start_bot(&servers, "ann@localhost");
    let send = |servers: &MailServers, id: &str, text: &str| {
        servers.send(
            "ann@localhost",
            "ocg@localhost",
            &mail("ann@localhost", id, "Talk", "", text),
        );
    };
    send(&servers, "b1@localhost", "before");
    wait_for(&servers, "ann", 1, &bot);

    bot.vendor.push(Script::Slow {
        first: "partial ".into(),
        hold: Duration::from_secs(3),
        rest: "answer".into(),
    });
    send(&servers, "b2@localhost", "during");
    assert!(bot.wait_for_request("during"), "the turn reaches the model");
    bot.kill_gateway();
    send(&servers, "b3@localhost", "while away");
    assert_eq!(got(&servers, "ann").len(), 1, "no reply yet");
    bot.start_gateway();
    let replies = wait_for(&servers, "ann", 3, &bot);
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = got(&servers, "ann").into_iter().map(|g| g.text).collect();
    assert_eq!(texts.len(), 3, "each answered once: {texts:?}");
    assert!(
        replies.iter().any(|g| g.text.contains("during")),
        "{texts:?}"
    );
    assert!(
        replies.iter().any(|g| g.text.contains("while away")),
        "{texts:?}"
    );

    // The IMAP server goes away and comes back.
    servers.kill_imap();
    bot.wait_state(LIMIT, false, "the loss shows");
    servers.run_imap();
    bot.wait_state(Duration::from_secs(40), true, "reconnected");
    send(&servers, "b4@localhost", "after");
    let replies = wait_for(&servers, "ann", 4, &bot);
    assert_eq!(replies[3].text, "echo: after");
    assert!(bot.channels()[0]["errors"].as_u64().unwrap() >= 1);
}

#[test]
fn wrong_email_keys_are_reported_and_the_gateway_serves_on() {
    let bot = Bot::start_with(&[("EMAIL_IMAP_SERVER", "127.0.0.1:9")], false);
    assert_eq!(bot.channels()[0]["state"], "failing");
    bot.wait_error("email", "EMAIL_SMTP_SERVER");
    drop(bot);

    let servers = MailServers::start(&["ocg"]);
    let mut settings = email_settings(&servers, "");
    settings.retain(|(k, _)| k != "EMAIL_PASSWORD");
    settings.push(("EMAIL_PASSWORD".into(), "wrong-password".into()));
    let bot = Bot::start_with(&pairs(&settings), false);
    bot.wait_error("email", "EMAIL_PASSWORD");
    assert!(
        !bot.log().contains("wrong-password"),
        "the password is never logged"
    );
}

#[test]
fn tls_is_verified_against_the_configured_authority() {
    let servers = MailServers::start_tls(&["ocg", "ann"]);
    let mut settings = email_settings(&servers, "ann@localhost");
    settings.retain(|(k, _)| !k.starts_with("EMAIL_TLS") && !k.ends_with("_SERVER"));
    settings.push((
        "EMAIL_IMAP_SERVER".into(),
        format!("localhost:{}", servers.imap_port),
    ));
    settings.push((
        "EMAIL_SMTP_SERVER".into(),
        format!("localhost:{}", servers.smtp_port),
    ));
    let mut trusting = settings.clone();
    trusting.push(("EMAIL_TLS_CA".into(), servers.ca().display().to_string()));
    let bot = Bot::start_with(&pairs(&trusting), false);
    bot.wait_state(LIMIT, true, "the channel connects with STARTTLS");
    servers.send(
        "ann@localhost",
        "ocg@localhost",
        &mail("ann@localhost", "t1@localhost", "Secure?", "", "over tls?"),
    );
    let replies = wait_for(&servers, "ann", 1, &bot);
    assert_eq!(replies[0].text, "echo: over tls?", "sent with STARTTLS too");
    drop(bot);

    // Without the authority the servers' certificate is not trusted.
    let bot = Bot::start_with(&pairs(&settings), false);
    bot.wait_error("email", "TLS");
}

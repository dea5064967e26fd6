//! The IRC channel end to end: a real IRC server (Debian's ngircd), a
//! second IRC client as the human (`ocg_tests::irc_server::Human` speaks the
//! protocol on a plain socket, as any client does), and the real agent and
//! gateway with a fake model.

use std::time::Duration;

use ocg_tests::fake_llm::Script;
use ocg_tests::irc_server::{Human, Ircd};
use ocg_tests::wait_until;

use crate::telegram::{Bot, LIMIT, pairs};

fn irc_settings(port: u16, allowed: &str) -> Vec<(String, String)> {
    vec![
        ("IRC_SERVER".into(), format!("127.0.0.1:{port}")),
        ("IRC_TLS".into(), "false".into()),
        ("IRC_NICK".into(), "ocg".into()),
        ("IRC_CHANNELS".into(), "#ocg".into()),
        ("IRC_ALLOWED".into(), allowed.into()),
    ]
}

fn start_bot(settings: &[(String, String)]) -> Bot {
    let bot = Bot::start_with(&pairs(settings), false);
    bot.wait_state(LIMIT, true, "the channel connects");
    bot
}

#[test]
fn allowed_people_are_answered_strangers_pair_and_long_replies_arrive_whole() {
    let ircd = Ircd::start();
    let bot = start_bot(&irc_settings(ircd.port, "ann!*@127.0.0.1"));
    let ann = Human::connect(ircd.port, "ann");

    // A direct message, answered directly.
    ann.say("ocg", "hello");
    assert!(ann.wait(|h| !h.from("ocg").is_empty()), "{}", bot.log());
    let reply = &ann.from("ocg")[0];
    assert_eq!(
        (reply.command.as_str(), reply.target.as_str()),
        ("PRIVMSG", "ann")
    );
    assert_eq!(reply.text, "echo: hello");

    // In a channel: only what is addressed to the bot, answered there.
    ann.join("#ocg");
    let bot_is_there = |h: &Human| {
        h.raw.lock().unwrap().iter().any(|l| {
            l.contains(" 353 ")
                && l.contains("#ocg")
                && l.rsplit(':').next().is_some_and(|names| {
                    names
                        .split_whitespace()
                        .any(|n| n.trim_start_matches(['@', '+']) == "ocg")
                })
        })
    };
    assert!(ann.wait(bot_is_there), "the bot is in #ocg (NAMES)");
    ann.say("#ocg", "just chatting");
    ann.say("#ocg", "ocg: what now?");
    assert!(ann.wait(|h| h.from("ocg").len() >= 2), "{}", bot.log());
    let reply = &ann.from("ocg")[1];
    assert_eq!(reply.target, "#ocg");
    assert_eq!(reply.text, "echo: what now?");
    let requests = bot.vendor.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.to_string().contains("just chatting")),
        "unaddressed channel talk never reaches the model"
    );

    // A long reply with multi-byte characters: whole, in order, each line
    // within IRC's 512 bytes as relayed.
    let long: String = (0..60)
        .map(|n| {
            format!(
                "Ligne {n:02} — réponse détaillée, ünïcödé ✓ {}",
                "x".repeat(n % 7)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    bot.vendor.push(Script::Text(long.clone()));
    ann.say("ocg", "tell me a lot");
    let before = ann.from("ocg").len();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let got: String = ann.from("ocg")[before..]
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            got.split_whitespace().count() >= long.split_whitespace().count()
        }),
        "{:?}",
        ann.from("ocg")
    );
    let pieces = &ann.from("ocg")[before..];
    assert!(
        pieces.len() >= 6,
        "split into several lines: {}",
        pieces.len()
    );
    let joined = pieces
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(&joined),
        words(&long),
        "nothing lost, nothing reordered"
    );
    assert!(
        ann.raw.lock().unwrap().iter().all(|l| l.len() + 2 <= 512),
        "every relayed line fits"
    );

    // A stranger gets a pairing code and nothing else, until approved.
    let eve = Human::connect(ircd.port, "eve");
    eve.say("ocg", "let me in");
    eve.say("ocg", "please");
    assert!(eve.wait(|h| !h.from("ocg").is_empty()), "{}", bot.log());
    std::thread::sleep(Duration::from_millis(500));
    let told = eve.from("ocg");
    assert_eq!(told.len(), 1, "one code only: {told:?}");
    assert_eq!(told[0].command, "NOTICE");
    assert!(told[0].text.contains("pairing code"), "{}", told[0].text);
    assert!(
        bot.never_saw("let me in"),
        "the stranger reaches neither the model nor the log"
    );
    let code = bot.approve_the_request("irc", "eve!~eve@127.0.0.1");
    assert!(told[0].text.contains(&code));
    assert!(eve.wait(|h| h.from("ocg").len() >= 2));
    assert!(eve.from("ocg")[1].text.contains("approved"));
    eve.say("ocg", "now?");
    assert!(eve.wait(|h| h.from("ocg").len() >= 3), "{}", bot.log());
    assert_eq!(eve.from("ocg")[2].text, "echo: now?");
    let config = std::fs::read_to_string(bot.install.path("env.config")).unwrap();
    assert!(config.contains("eve!~eve@127.0.0.1"), "{config}");

    let channels = bot.channels();
    assert_eq!(channels[0]["name"], "irc");
    assert_eq!(channels[0]["state"], "connected");
    assert!(channels[0]["received"].as_u64().unwrap() >= 4);
}

#[test]
fn a_gateway_killed_mid_turn_and_a_server_that_goes_away_lose_nothing() {
    let mut ircd = Ircd::start();
    let mut bot = start_bot(&irc_settings(ircd.port, "*!*@127.0.0.1"));
    let ann = Human::connect(ircd.port, "ann");
    ann.say("ocg", "before");
    assert!(ann.wait(|h| h.from("ocg").len() == 1), "{}", bot.log());

    // The model holds the next answer while the gateway is killed.
    bot.vendor.push(Script::Slow {
        first: "partial ".into(),
        hold: Duration::from_secs(3),
        rest: "answer".into(),
    });
    ann.say("ocg", "during");
    assert!(bot.wait_for_request("during"), "the turn reaches the model");
    bot.kill_gateway();
    assert_eq!(ann.from("ocg").len(), 1, "no reply yet");
    bot.start_gateway();
    assert!(
        ann.wait(|h| h.from("ocg").len() >= 2),
        "the message received before the kill is answered after the restart: {}",
        bot.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = ann.from("ocg").into_iter().map(|s| s.text).collect();
    assert_eq!(texts.len(), 2, "answered once: {texts:?}");
    assert!(texts[1].contains("during"), "{texts:?}");

    // The server goes away and comes back: the bot reconnects and answers.
    ircd.kill();
    bot.wait_state(LIMIT, false, "the loss shows");
    ircd.run();
    bot.wait_state(Duration::from_secs(30), true, "reconnected");
    let ann = Human::connect(ircd.port, "ann");
    ann.say("ocg", "after");
    assert!(ann.wait(|h| !h.from("ocg").is_empty()), "{}", bot.log());
    assert_eq!(ann.from("ocg")[0].text, "echo: after");
    assert!(bot.channels()[0]["errors"].as_u64().unwrap() >= 1);
}

#[test]
fn wrong_irc_keys_are_reported_and_the_gateway_serves_on() {
    let bot = Bot::start_with(
        &[("IRC_SERVER", "127.0.0.1:6667"), ("IRC_NICK", "9bad")],
        false,
    );
    assert_eq!(bot.channels()[0]["state"], "failing");
    bot.wait_error("irc", "IRC_NICK");
}

#[test]
fn tls_is_verified_against_the_configured_authority() {
    let ircd = Ircd::start_tls();
    let tls_port = ircd.tls_port.unwrap();
    let ca = ircd.ca().display().to_string();
    let mut settings = irc_settings(tls_port, "*!*@127.0.0.1");
    settings.retain(|(k, _)| k != "IRC_TLS" && k != "IRC_SERVER");
    settings.push(("IRC_SERVER".into(), format!("localhost:{tls_port}")));
    settings.push(("IRC_TLS_CA".into(), ca));
    let bot = start_bot(&settings);
    let ann = Human::connect(ircd.port, "ann");
    ann.say("ocg", "over tls?");
    assert!(ann.wait(|h| !h.from("ocg").is_empty()), "{}", bot.log());
    assert_eq!(ann.from("ocg")[0].text, "echo: over tls?");
    drop(bot);

    // Without the authority the server's certificate is not trusted.
    settings.retain(|(k, _)| k != "IRC_TLS_CA");
    let bot = Bot::start_with(&pairs(&settings), false);
    bot.wait_error("irc", "TLS");
}

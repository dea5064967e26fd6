//! The Matrix channel end to end: a real homeserver (Synapse from PyPI),
//! people on it as clients of its client-server API, and the real agent and
//! gateway with a fake model.

use std::time::Duration;

use ocg_tests::fake_llm::Script;
use ocg_tests::matrix_server::{Person, Synapse};
use ocg_tests::wait_until;
use serde_json::json;

use crate::telegram::{Bot, LIMIT};

const BOT: &str = "@ocg:ocg.test";
const BOT_PASSWORD: &str = "bot-password-SECRET";

fn start_bot(synapse: &Synapse, allowed: &str) -> Bot {
    let url = synapse.url();
    let bot = Bot::start_with(
        &[
            ("MATRIX_HOMESERVER", &url),
            ("MATRIX_USER_ID", BOT),
            ("MATRIX_PASSWORD", BOT_PASSWORD),
            ("MATRIX_ALLOWED", allowed),
        ],
        false,
    );
    bot.wait_state(LIMIT, true, "the channel connects");
    bot
}

/// A direct chat of `person` with the bot, once the bot has joined it.
fn direct_chat(person: &Person, bot: &Bot) -> String {
    let room = person.create_room(&[BOT], true, false);
    assert!(
        wait_until(LIMIT, || person.members(&room).iter().any(|m| m == BOT)),
        "the bot accepts the invitation: {}",
        bot.log()
    );
    room
}

#[test]
fn allowed_people_are_answered_strangers_pair_and_long_replies_arrive_whole() {
    let synapse = Synapse::start();
    synapse.register("ocg", BOT_PASSWORD);
    let ann = synapse.register("ann", "ann-password");
    let bot = start_bot(&synapse, "@ann:ocg.test");
    assert!(
        !bot.log().contains("SECRET"),
        "the password never reaches the log"
    );

    let room = direct_chat(&ann, &bot);
    ann.say(&room, "hello");
    assert!(ann.wait(&room, BOT, |m| !m.is_empty()), "{}", bot.log());
    let reply = &ann.from(&room, BOT)[0];
    assert_eq!(
        (reply.msgtype.as_str(), reply.body.as_str()),
        ("m.text", "echo: hello")
    );

    // Markdown arrives as HTML with the text as the fallback.
    bot.vendor.push(Script::Text("**Paris**, of course".into()));
    ann.say(&room, "capital?");
    assert!(ann.wait(&room, BOT, |m| m.len() >= 2), "{}", bot.log());
    let reply = &ann.from(&room, BOT)[1];
    assert_eq!(reply.body, "**Paris**, of course");
    assert_eq!(reply.content["format"], "org.matrix.custom.html");
    assert_eq!(reply.content["formatted_body"], "<b>Paris</b>, of course");

    // A long reply: several events, whole and in order.
    let long: String = (0..3000)
        .map(|n| format!("mot{n:04}-é✓"))
        .collect::<Vec<_>>()
        .join(" ");
    bot.vendor.push(Script::Text(long.clone()));
    ann.say(&room, "tell me a lot");
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert!(
        ann.wait(&room, BOT, |m| {
            m[2..].iter().map(|s| words(&s.body).len()).sum::<usize>() >= 3000
        }),
        "{}",
        bot.log()
    );
    let pieces = &ann.from(&room, BOT)[2..];
    assert!(
        pieces.len() >= 3,
        "split into several events: {}",
        pieces.len()
    );
    let joined: Vec<String> = pieces.iter().flat_map(|s| words(&s.body)).collect();
    assert_eq!(joined, words(&long), "nothing lost, nothing reordered");

    // An encrypted room: one notice that it cannot be read, nothing else.
    let secret_room = ann.create_room(&[BOT], false, true);
    assert!(wait_until(LIMIT, || ann
        .members(&secret_room)
        .iter()
        .any(|m| m == BOT)));
    let sealed = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "sender_key": "k", "session_id": "s", "device_id": "D"});
    ann.send_event(&secret_room, "m.room.encrypted", &sealed);
    ann.send_event(&secret_room, "m.room.encrypted", &sealed);
    assert!(
        ann.wait(&secret_room, BOT, |m| !m.is_empty()),
        "{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let told = ann.from(&secret_room, BOT);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].msgtype, "m.notice");
    assert!(told[0].body.contains("encrypted"), "{}", told[0].body);

    // A stranger's invitation: accepted to give a code, and nothing else.
    let eve = synapse.register("eve", "eve-password");
    let eve_room = direct_chat(&eve, &bot);
    assert!(eve.wait(&eve_room, BOT, |m| !m.is_empty()), "{}", bot.log());
    eve.say(&eve_room, "let me in");
    std::thread::sleep(Duration::from_secs(1));
    let told = eve.from(&eve_room, BOT);
    assert_eq!(told.len(), 1, "one code only: {told:?}");
    assert_eq!(told[0].msgtype, "m.notice");
    assert!(told[0].body.contains("pairing code"), "{}", told[0].body);
    assert!(
        bot.never_saw("let me in"),
        "the stranger reaches neither the model nor the log"
    );
    let code = bot.approve_the_request("matrix", "@eve:ocg.test");
    assert!(told[0].body.contains(&code));
    assert!(eve.wait(&eve_room, BOT, |m| m.len() >= 2));
    assert!(eve.from(&eve_room, BOT)[1].body.contains("approved"));
    eve.say(&eve_room, "now?");
    assert!(eve.wait(&eve_room, BOT, |m| m.len() >= 3), "{}", bot.log());
    assert_eq!(eve.from(&eve_room, BOT)[2].body, "echo: now?");
    let config = std::fs::read_to_string(bot.install.path("env.config")).unwrap();
    assert!(
        config.contains("MATRIX_ALLOWED=@ann:ocg.test,@eve:ocg.test"),
        "{config}"
    );

    let channels = bot.channels();
    assert_eq!(channels[0]["name"], "matrix");
    assert_eq!(channels[0]["state"], "connected");
    assert!(channels[0]["received"].as_u64().unwrap() >= 4);
}

#[test]
fn a_gateway_killed_mid_turn_and_a_homeserver_that_goes_away_lose_nothing() {
    let mut synapse = Synapse::start();
    synapse.register("ocg", BOT_PASSWORD);
    let ann = synapse.register("ann", "ann-password");
    let mut bot = start_bot(&synapse, "@*:ocg.test");
    let room = direct_chat(&ann, &bot);
    ann.say(&room, "before");
    assert!(ann.wait(&room, BOT, |m| m.len() == 1), "{}", bot.log());

    // The model holds the next answer while the gateway is killed.
    bot.vendor.push(Script::Slow {
        first: "partial ".into(),
        hold: Duration::from_secs(3),
        rest: "answer".into(),
    });
    ann.say(&room, "during");
    assert!(bot.wait_for_request("during"), "the turn reaches the model");
    bot.kill_gateway();
    // Written while the gateway is down: answered after it is back.
    ann.say(&room, "while away");
    assert_eq!(ann.from(&room, BOT).len(), 1, "no reply yet");
    bot.start_gateway();
    assert!(
        ann.wait(&room, BOT, |m| m.len() >= 3),
        "both messages are answered after the restart: {}",
        bot.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = ann.from(&room, BOT).into_iter().map(|s| s.body).collect();
    assert_eq!(texts.len(), 3, "each answered once: {texts:?}");
    assert!(texts[1].contains("during"), "{texts:?}");
    assert!(texts[2].contains("while away"), "{texts:?}");
    assert!(
        bot.log().contains("logged in") && bot.log().matches("logged in").count() == 1,
        "the kept login is used again after the restart: {}",
        bot.log()
    );

    // The homeserver goes away and comes back: the bot syncs again.
    synapse.kill();
    bot.wait_state(Duration::from_secs(60), false, "the loss shows");
    synapse.run();
    bot.wait_state(Duration::from_secs(90), true, "synced again");
    ann.say(&room, "after");
    assert!(ann.wait(&room, BOT, |m| m.len() >= 4), "{}", bot.log());
    assert_eq!(ann.from(&room, BOT)[3].body, "echo: after");
    assert!(bot.channels()[0]["errors"].as_u64().unwrap() >= 1);
}

#[test]
fn wrong_matrix_keys_are_reported_and_the_gateway_serves_on() {
    let bot = Bot::start_with(
        &[
            ("MATRIX_HOMESERVER", "http://127.0.0.1:9"),
            ("MATRIX_USER_ID", "ocg"),
            ("MATRIX_PASSWORD", "x"),
        ],
        false,
    );
    assert_eq!(bot.channels()[0]["state"], "failing");
    bot.wait_error("matrix", "MATRIX_USER_ID");
    drop(bot);

    // Keys well formed, password wrong: refused by the homeserver, shown.
    let synapse = Synapse::start();
    synapse.register("ocg", BOT_PASSWORD);
    let url = synapse.url();
    let bot = Bot::start_with(
        &[
            ("MATRIX_HOMESERVER", &url),
            ("MATRIX_USER_ID", BOT),
            ("MATRIX_PASSWORD", "wrong-password"),
        ],
        false,
    );
    bot.wait_error("matrix", "MATRIX_PASSWORD");
}

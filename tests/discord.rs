//! The Discord channel end to end: the real agent and gateway binaries, a
//! fake model and a fake Discord (REST and Gateway).

use std::time::Duration;

use ocg_tests::fake_discord::{self, FakeDiscord, dm_channel};
use ocg_tests::fake_llm::Script;
use ocg_tests::wait_until;

use crate::telegram::{Bot, LIMIT};

const TOKEN: &str = "MTEyMjMzNDQ1NTY2Nzc4ODk5.GxYzAb.SECRET-discord_token";
const ANN: &str = "300000000000000001";
const STRANGER: &str = "300000000000000099";
const GUILD: &str = "400000000000000001";
const ALLOWED_CHANNEL: &str = "500000000000000001";
const OTHER_CHANNEL: &str = "500000000000000002";
const THREAD: &str = "500000000000000003";

fn start(discord: &FakeDiscord, extra: &[(&str, &str)]) -> Bot {
    let allowed = format!("{ANN}, channel:{ALLOWED_CHANNEL}");
    let mut settings = vec![
        ("DISCORD_BOT_TOKEN", TOKEN),
        ("DISCORD_API_URL", discord.url.as_str()),
        ("DISCORD_ALLOWED", allowed.as_str()),
    ];
    settings.extend_from_slice(extra);
    let bot = Bot::start_with(&settings, false);
    assert!(
        discord.wait(LIMIT, FakeDiscord::connected),
        "the channel identifies: {}",
        bot.log()
    );
    bot
}

#[test]
fn a_conversation_survives_drops_reconnects_and_redeliveries_answered_once_each() {
    let discord = fake_discord::start(TOKEN);
    let bot = start(&discord, &[]);
    assert!(
        wait_until(LIMIT, || bot.channels()[0]["state"] == "connected"),
        "{}",
        bot.channels()
    );
    assert_eq!(bot.channels()[0]["name"], "discord");
    assert_eq!(bot.channels()[0]["mode"], "gateway");
    let dm = dm_channel(ANN);
    discord.push_dm(ANN, "one");
    assert!(
        discord.wait(LIMIT, |d| d.texts_to(&dm).len() == 1),
        "{}",
        bot.log()
    );

    // The network drops mid-conversation; what is said meanwhile is
    // replayed on resume.
    discord.drop_connection();
    discord.push_dm(ANN, "two");
    assert!(
        discord.wait(LIMIT, |d| d.texts_to(&dm).len() == 2),
        "resumed and answered: {:?}\n{}",
        discord.sent(),
        bot.log()
    );
    assert_eq!(discord.identifies(), 1, "resumed, not identified again");
    assert!(!discord.resumes().is_empty());

    // The same event again (a replay): not answered twice.
    discord.redeliver_last_message();
    // Op 7: reconnect and resume.
    let resumed = discord.resumes().len();
    discord.request_reconnect();
    assert!(discord.wait(LIMIT, |d| d.resumes().len() > resumed && d.connected()));
    discord.push_dm(ANN, "three");
    assert!(discord.wait(LIMIT, |d| d.texts_to(&dm).len() == 3));
    // Op 9, not resumable: a fresh identify.
    discord.invalidate_session(false);
    assert!(
        discord.wait(LIMIT, |d| d.identifies() == 2 && d.connected()),
        "{}",
        bot.log()
    );
    discord.push_dm(ANN, "four");
    assert!(discord.wait(LIMIT, |d| d.texts_to(&dm).len() == 4));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        discord.texts_to(&dm),
        ["echo: one", "echo: two", "echo: three", "echo: four"],
        "each once, in order"
    );
    assert!(discord.typing().contains(&dm), "typing is shown");
    // Heartbeats at Discord's interval; one not acknowledged means a dead
    // connection, which is resumed.
    assert!(
        discord.wait(LIMIT, |d| d.heartbeats() >= 2),
        "{}",
        bot.log()
    );
    let resumed = discord.resumes().len();
    discord.stop_acking();
    assert!(
        discord.wait(LIMIT, |d| d.resumes().len() > resumed && d.connected()),
        "{:?}\n{}",
        discord.resumes(),
        bot.log()
    );
    discord.push_dm(ANN, "five");
    assert!(discord.wait(LIMIT, |d| d.texts_to(&dm).len() == 5));
    assert_eq!(discord.texts_to(&dm)[4], "echo: five");
    for sent in discord.sent() {
        assert_eq!(
            sent.body["allowed_mentions"]["parse"],
            serde_json::json!([]),
            "replies ping nobody"
        );
    }

    // Guilds: mentions in allowed channels and their threads; nothing else.
    discord.add_thread(THREAD, ALLOWED_CHANNEL);
    discord.push_message(STRANGER, ALLOWED_CHANNEL, Some(GUILD), "not to me", false);
    discord.push_message(
        STRANGER,
        OTHER_CHANNEL,
        Some(GUILD),
        "a stranger elsewhere",
        true,
    );
    discord.push_message(
        STRANGER,
        ALLOWED_CHANNEL,
        Some(GUILD),
        "in the channel",
        true,
    );
    discord.push_message(STRANGER, THREAD, Some(GUILD), "in the thread", true);
    assert!(
        discord.wait(LIMIT, |d| d.texts_to(THREAD).len() == 1
            && d.texts_to(ALLOWED_CHANNEL).len() == 1),
        "{:?}\n{}",
        discord.sent(),
        bot.log()
    );
    assert_eq!(discord.texts_to(ALLOWED_CHANNEL), ["echo: in the channel"]);
    assert_eq!(discord.texts_to(THREAD), ["echo: in the thread"]);
    assert!(discord.texts_to(OTHER_CHANNEL).is_empty());
    assert!(bot.never_saw("not to me") && bot.never_saw("a stranger elsewhere"));

    // A stranger's DM: a pairing code, and nothing of the agent. Its send
    // waits out a rate limit without holding up the Gateway: a message
    // that arrives meanwhile is answered first.
    let stranger = dm_channel(STRANGER);
    discord.rate_limit(&stranger, 3.0, 1);
    discord.push_dm(STRANGER, "let me in");
    let answered = discord.texts_to(&dm).len();
    discord.push_dm(ANN, "meanwhile");
    assert!(discord.wait(LIMIT, |d| d.texts_to(&dm).len() > answered));
    assert!(
        discord.texts_to(&stranger).is_empty(),
        "answered during the code's rate limit"
    );
    assert!(discord.wait(LIMIT, |d| d.texts_to(&stranger).len() == 1));
    assert_eq!(discord.early_requests(), 0);
    assert!(discord.texts_to(&stranger)[0].contains("pairing code"));
    bot.approve_the_request("discord", STRANGER);
    discord.push_dm(STRANGER, "hello now");
    assert!(discord.wait(LIMIT, |d| d.texts_to(&stranger).len() == 3));
    assert_eq!(discord.texts_to(&stranger)[2], "echo: hello now");
    let answered = discord.texts_to(&dm).len();

    assert!(wait_until(LIMIT, || bot.channels()[0]["pending"] == 0));

    // kill -9 the gateway; what is said while it is down is replayed when
    // the new one resumes the session kept in the journal.
    let mut bot = bot;
    bot.kill_gateway();
    let identified = discord.identifies();
    discord.push_dm(ANN, "while you were away");
    bot.start_gateway();
    assert!(
        discord.wait(LIMIT, |d| d.texts_to(&dm).len() == answered + 1),
        "{}",
        bot.log()
    );
    assert_eq!(discord.texts_to(&dm)[answered], "echo: while you were away");
    assert_eq!(
        discord.identifies(),
        identified,
        "resumed after the restart"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        discord.texts_to(&dm).len(),
        answered + 1,
        "nothing answered twice"
    );
    assert!(!bot.log().contains("SECRET"), "the token is never logged");
}

#[test]
fn a_rate_limited_long_reply_arrives_split_in_order_after_the_wait() {
    let discord = fake_discord::start(TOKEN);
    let bot = start(&discord, &[]);
    let paragraphs: Vec<String> = (0..5)
        .map(|n| format!("Paragraph {n}: {}", "word ".repeat(190)))
        .collect();
    let long = paragraphs.join("\n\n");
    bot.vendor.push(Script::Text(long.clone()));
    let dm = dm_channel(ANN);
    discord.rate_limit(&dm, 1.2, 1);
    let asked = std::time::Instant::now();
    discord.push_dm(ANN, "tell me a lot");
    assert!(
        discord.wait(LIMIT, |d| d.texts_to(&dm).len() >= 3),
        "{:?}\n{}",
        discord.sent(),
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let sent = discord.texts_to(&dm);
    assert!(
        sent.iter().all(|p| p.chars().count() <= 2000),
        "each piece fits"
    );
    let joined: String = sent.join(" ");
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(&joined), words(&long), "nothing lost, in order");
    assert_eq!(discord.early_requests(), 0, "no send before retry_after");
    let first = discord.sent()[0].at;
    assert!(
        first.duration_since(asked) >= Duration::from_millis(1200),
        "the first piece waited for the limit"
    );
}

#[test]
fn a_refused_token_is_shown_and_not_retried() {
    let discord = fake_discord::start("another-token-of-the-right-length.x.y");
    let bot = Bot::start_with(
        &[
            ("DISCORD_BOT_TOKEN", TOKEN),
            ("DISCORD_API_URL", discord.url.as_str()),
        ],
        false,
    );
    bot.wait_error("discord", "DISCORD_BOT_TOKEN");
    assert_eq!(discord.identifies(), 0);
}

#[test]
fn a_job_added_with_chat_discord_is_delivered_to_the_discord_chat() {
    let discord = fake_discord::start(TOKEN);
    let bot = start(&discord, &[]);
    let dm = dm_channel(ANN);
    let chat = format!("discord:{dm}");
    let out = bot
        .install
        .command("ocg")
        .args([
            "cron",
            "add",
            "--every",
            "2s",
            "-m",
            "Say tick.",
            "--chat",
            &chat,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        discord.wait(LIMIT, |d| !d.texts_to(&dm).is_empty()),
        "the job's answer arrives in the DM: {:?}\n{}",
        discord.sent(),
        bot.log()
    );
    assert!(
        discord.texts_to(&dm)[0].starts_with("echo:"),
        "{:?}",
        discord.texts_to(&dm)
    );
}

//! The Telegram channel end to end: the real agent and gateway binaries, a
//! fake OpenAI-compatible model and a fake Telegram Bot API.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use ocg_tests::fake_llm::{self, Script};
use ocg_tests::fake_telegram::{self, FakeTelegram, Fault};
use ocg_tests::{Install, http_get, wait_until};

pub(crate) const UI_TOKEN: &str = "0123456789abcdef0123456789abcdef";
const BOT_TOKEN: &str = "123456:TEST-bot_token-SECRET";
const WEBHOOK_SECRET: &str = "hook-secret_42";
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// Owned settings as the pairs [`Bot::start_with`] takes.
pub(crate) fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The agent and the gateway, started directly so the test can kill -9 and
/// restart the gateway alone.
pub(crate) struct Bot {
    pub(crate) install: Install,
    pub(crate) telegram: FakeTelegram,
    pub(crate) vendor: fake_llm::FakeLlm,
    agent: Option<Child>,
    gateway: Option<Child>,
}

impl Bot {
    /// The agent and the gateway with the Telegram channel (and `settings`).
    pub(crate) fn start(settings: &[(&str, &str)]) -> Bot {
        Self::start_with(settings, true)
    }

    /// The agent and the gateway with `settings`, and the Telegram channel
    /// when `telegram` (its fake server runs either way).
    pub(crate) fn start_with(settings: &[(&str, &str)], telegram_on: bool) -> Bot {
        let vendor = fake_llm::start_openai();
        let telegram = fake_telegram::start(BOT_TOKEN);
        let mut install = Install::new()
            .with("OPENAI_BASE_URL", &vendor.base_url)
            .with("OCG_UI_TOKEN", UI_TOKEN)
            .with("RUST_LOG", "info");
        if telegram_on {
            install = install
                .with("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
                .with("TELEGRAM_API_URL", &telegram.url);
        }
        for (key, value) in settings {
            install = install.with(key, value);
        }
        std::fs::create_dir_all(install.path("logs")).unwrap();
        let mut bot = Bot {
            install,
            telegram,
            vendor,
            agent: None,
            gateway: None,
        };
        bot.start_agent();
        bot.start_gateway();
        bot
    }

    /// Start `program` of the installation, its stderr appended to `log`.
    fn spawn_logged(&self, program: &str, log: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.install
            .command(program)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Start the agent (appending to logs/agent.log) and wait for its socket.
    pub(crate) fn start_agent(&mut self) {
        let _ = std::fs::remove_file(self.install.socket());
        self.agent = Some(self.spawn_logged("ocg-agent", &self.install.path("logs/agent.log")));
        let socket = self.install.socket();
        assert!(
            wait_until(LIMIT, || ocg_tests::unix_http_get(&socket, "/health")
                .is_some()),
            "the agent answers on its socket"
        );
    }

    /// SIGKILL the agent: no shutdown code runs.
    pub(crate) fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM the agent and wait for its clean exit.
    pub(crate) fn terminate_agent(&mut self) {
        terminate(self.agent.take().unwrap());
    }

    pub(crate) fn agent_log(&self) -> String {
        std::fs::read_to_string(self.install.path("logs/agent.log")).unwrap_or_default()
    }

    pub(crate) fn log_path(&self) -> std::path::PathBuf {
        self.install.path("logs/gateway.log")
    }

    pub(crate) fn start_gateway(&mut self) {
        self.gateway = Some(self.spawn_logged("ocg-gateway", &self.log_path()));
        let url = format!("{}/health", self.install.gateway_url());
        assert!(
            wait_until(LIMIT, || http_get(&url).is_some()),
            "the gateway answers: {}",
            self.log()
        );
    }

    pub(crate) fn kill_gateway(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            // SIGKILL: no shutdown code runs.
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then wait; how long the gateway took to exit.
    pub(crate) fn terminate_gateway(&mut self) -> Duration {
        let started = std::time::Instant::now();
        terminate(self.gateway.take().unwrap());
        started.elapsed()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Wait up to `limit` until the first channel's state is `state`
    /// (`connected: false`: until it is anything else); `what` is said
    /// with the channels and the log when it does not happen.
    pub(crate) fn wait_state(&self, limit: Duration, connected: bool, what: &str) {
        assert!(
            wait_until(limit, || (self.channels()[0]["state"] == "connected")
                == connected),
            "{what}: {}\n{}",
            self.channels(),
            self.log()
        );
    }

    /// Wait until the first channel, `name`, shows an error naming `why`
    /// on `/api/channels` and as a degraded check of the gateway's
    /// `/health` (what `ocg status` prints).
    pub(crate) fn wait_error(&self, name: &str, why: &str) {
        assert!(
            wait_until(LIMIT, || self.channels()[0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(why))),
            "{}",
            self.channels()
        );
        assert_eq!(self.channels()[0]["name"], name);
        assert_ne!(self.channels()[0]["state"], "connected");
        let (_, health) = http_get(&format!("{}/health", self.install.gateway_url())).unwrap();
        assert!(
            health.contains(&format!("channel {name}"))
                && health.contains(why)
                && health.contains("degraded"),
            "{health}"
        );
    }

    /// Wait until the model's latest request holds `text` (a turn has
    /// reached it).
    pub(crate) fn wait_for_request(&self, text: &str) -> bool {
        wait_until(LIMIT, || {
            self.vendor
                .requests()
                .last()
                .is_some_and(|r| r.to_string().contains(text))
        })
    }

    /// Whether `text` (a stranger's) never reached the model nor the log.
    pub(crate) fn never_saw(&self, text: &str) -> bool {
        !self
            .vendor
            .requests()
            .iter()
            .any(|r| r.to_string().contains(text))
            && !self.log().contains(text)
    }

    /// The one pending pairing request, as `ocg pair list --json` shows
    /// it, checked to be `entry` on `channel`; approved with
    /// `ocg pair approve`. Its code.
    pub(crate) fn approve_the_request(&self, channel: &str, entry: &str) -> String {
        let out = self
            .install
            .command("ocg")
            .args(["pair", "list", "--json"])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed[0]["channel"], channel, "{listed}");
        assert_eq!(listed[0]["entry"], entry, "{listed}");
        let code = listed[0]["code"].as_str().unwrap().to_owned();
        let approved = self
            .install
            .command("ocg")
            .args(["pair", "approve", &code])
            .output()
            .unwrap();
        assert!(
            approved.status.success(),
            "{}",
            String::from_utf8_lossy(&approved.stderr)
        );
        code
    }

    pub(crate) fn channels(&self) -> serde_json::Value {
        let (status, body) = request(
            "GET",
            &format!("{}/api/channels", self.install.gateway_url()),
            &[("Authorization", &format!("Bearer {UI_TOKEN}"))],
            b"",
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill_gateway();
        self.kill_agent();
    }
}

/// SIGTERM `child` and wait for its clean exit.
fn terminate(mut child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit: {status}");
}

/// One HTTP/1.1 request with extra headers; status and body.
pub(crate) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let authority = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let path = &url["http://".len() + authority.len()..];
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn chats_are_answered_in_order_strangers_get_a_code_only_and_commands_work() {
    let bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "111, 222")]);
    let tg = &bot.telegram;
    for n in 0..5 {
        tg.push_text(111, &format!("a{n}"));
        tg.push_text(222, &format!("b{n}"));
    }
    tg.push_text(333, "let me in");
    assert!(
        tg.wait(LIMIT, |t| t.sent().len() >= 11),
        "ten replies and a pairing code: {:?}\n{}",
        tg.sent(),
        bot.log()
    );
    let expected = |prefix: &str| {
        (0..5)
            .map(|n| format!("echo: {prefix}{n}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(tg.texts_to(111), expected("a"), "in order, once each");
    assert_eq!(tg.texts_to(222), expected("b"));
    let stranger = tg.texts_to(333);
    assert_eq!(
        stranger.len(),
        1,
        "a stranger gets one message: {stranger:?}"
    );
    assert!(
        stranger[0].contains("pairing code") && !stranger[0].contains("echo"),
        "a code, and nothing of the agent: {}",
        stranger[0]
    );
    assert!(
        tg.sent()
            .iter()
            .filter(|s| s.chat_id != "333")
            .all(|s| s.parse_mode.as_deref() == Some("HTML")),
        "agent answers go out as HTML"
    );
    let typing = tg.calls("sendChatAction");
    assert!(
        typing
            .iter()
            .any(|c| c["chat_id"] == "111" && c["action"] == "typing")
    );
    assert!(!typing.iter().any(|c| c["chat_id"] == "333"));
    let log = bot.log();
    assert!(
        log.contains("333") && log.contains("pairing code") && !log.contains("let me in"),
        "the stranger is logged, without what they wrote: {log}"
    );
    assert!(!log.contains("SECRET"), "the bot token is never logged");

    // Commands are answered by the channel; /new resets the session.
    tg.push_text(111, "/help");
    tg.push_text(111, "/new@test_bot");
    assert!(tg.wait(LIMIT, |t| t.texts_to(111).len() >= 7));
    let texts = tg.texts_to(111);
    assert!(texts[5].contains("/new"), "{}", texts[5]);
    assert!(
        texts[6].starts_with("Started a new conversation"),
        "{}",
        texts[6]
    );
    let calls_before = bot.vendor.requests().len();
    tg.push_text(111, "fresh");
    assert!(tg.wait(LIMIT, |t| t.texts_to(111).len() >= 8));
    let last = &bot.vendor.requests()[calls_before];
    let users = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .count();
    assert_eq!(
        users, 1,
        "after /new the model sees no earlier turn: {last}"
    );

    // Photos and voice notes are answered, not ignored.
    tg.push_message(
        222,
        serde_json::json!({"photo": [{"file_id": "p1", "file_unique_id": "u", "width": 1, "height": 1}]}),
    );
    tg.push_message(
        222,
        serde_json::json!({"voice": {"file_id": "v1", "file_unique_id": "u", "duration": 1}}),
    );
    assert!(tg.wait(LIMIT, |t| t.texts_to(222).len() >= 7));
    let texts = tg.texts_to(222);
    assert!(texts[5].contains("cannot read photos"), "{}", texts[5]);
    assert!(texts[6].contains("voice"), "{}", texts[6]);

    // "done" is recorded just after the reply is accepted.
    assert!(wait_until(LIMIT, || bot.channels()[0]["pending"] == 0));
    let channels = bot.channels();
    let telegram = &channels[0];
    assert_eq!(telegram["name"], "telegram");
    assert_eq!(telegram["state"], "connected");
    assert_eq!(telegram["mode"], "long_polling");
    assert_eq!(
        telegram["received"], 15,
        "the stranger's message is not taken in"
    );
    assert_eq!(telegram["pending"], 0);
    assert!(telegram["last_message_at_ms"].as_u64().unwrap() > 0);

    // A 30 s long poll is in progress: shutdown does not wait for it.
    let mut bot = bot;
    let took = bot.terminate_gateway();
    assert!(took < Duration::from_secs(5), "stopped promptly: {took:?}");
}

#[test]
fn kill_9_between_receiving_and_replying_neither_loses_nor_repeats() {
    let mut bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "7")]);
    bot.telegram.push_text(7, "before");
    assert!(bot.telegram.wait(LIMIT, |t| t.texts_to(7).len() == 1));

    // The model holds the next answer: the gateway has received and recorded
    // the update and is waiting for the agent when it is killed.
    bot.vendor.push(Script::Slow {
        first: "partial ".into(),
        hold: Duration::from_secs(3),
        rest: "answer".into(),
    });
    bot.telegram.push_text(7, "during");
    let vendor = bot.vendor.clone();
    assert!(
        wait_until(LIMIT, || vendor
            .requests()
            .last()
            .is_some_and(|r| r.to_string().contains("during"))),
        "the model is working on the second message"
    );
    bot.kill_gateway();
    assert_eq!(
        bot.telegram.texts_to(7),
        vec!["echo: before"],
        "no reply yet"
    );

    bot.start_gateway();
    bot.telegram.push_text(7, "after");
    assert!(
        bot.telegram.wait(LIMIT, |t| t.texts_to(7).len() >= 3),
        "{:?}\n{}",
        bot.telegram.texts_to(7),
        bot.log()
    );
    // Give a repeated reply every chance to show up.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        bot.telegram.texts_to(7),
        vec!["echo: before", "echo: during", "echo: after"],
        "the interrupted message is answered once, in order; nothing is repeated"
    );
    assert!(!bot.log().contains("SECRET"));
}

#[test]
fn formatting_rejected_is_resent_plain_and_long_replies_are_split() {
    let bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "5")]);
    let tg = &bot.telegram;

    tg.reject_html(1);
    bot.vendor.push(Script::Text("**bold** answer".into()));
    tg.push_text(5, "format me");
    assert!(
        tg.wait(LIMIT, |t| t.texts_to(5).len() == 1),
        "{}",
        bot.log()
    );
    let sent = tg.sent();
    assert_eq!(sent[0].text, "**bold** answer", "the same text, plain");
    assert_eq!(sent[0].parse_mode, None);

    // A model failure reaches the user as one short line.
    bot.vendor
        .push(Script::Fail(400, "the model refused: bad request".into()));
    tg.push_text(5, "fail please");
    assert!(
        tg.wait(LIMIT, |t| t.texts_to(5).len() == 2),
        "{}",
        bot.log()
    );
    let error = &tg.texts_to(5)[1];
    assert!(error.starts_with("Sorry, I could not answer"), "{error}");
    assert!(error.chars().count() < 400, "{error}");

    // 3 paragraphs of multi-byte text, 9000 characters: three messages.
    let paragraph = "Привет, мир! 😀 ".repeat(200);
    let long = [paragraph.trim(), paragraph.trim(), paragraph.trim()].join("\n\n");
    bot.vendor.push(Script::Text(long.clone()));
    tg.push_text(5, "long please");
    assert!(
        tg.wait(LIMIT, |t| t.texts_to(5).len() >= 3),
        "{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let pieces: Vec<String> = tg.sent()[2..]
        .iter()
        .map(|s| fake_telegram::strip_tags(&s.text))
        .collect();
    assert!(pieces.len() >= 3, "{}", pieces.len());
    for piece in &pieces {
        assert!(piece.encode_utf16().count() <= 4096);
        assert!(
            piece.starts_with("Привет") && piece.ends_with('😀'),
            "{piece:?}"
        );
    }
    assert_eq!(
        pieces.join("\n\n"),
        long,
        "split on paragraphs, nothing lost"
    );
}

#[test]
fn rate_limits_server_errors_and_slow_answers_are_retried() {
    let bot = Bot::start(&[("TELEGRAM_ALLOWED_CHATS", "9")]);
    let tg = &bot.telegram;
    tg.fault("getUpdates", Fault::Status(502, None));
    tg.fault("getUpdates", Fault::Status(429, Some(1)));
    tg.fault("sendMessage", Fault::Status(429, Some(1)));
    tg.fault("sendMessage", Fault::Status(500, None));
    tg.fault("sendMessage", Fault::Slow(Duration::from_secs(2)));
    tg.push_text(9, "one");
    tg.push_text(9, "two");
    assert!(
        tg.wait(Duration::from_secs(30), |t| t.texts_to(9).len() >= 2),
        "{}",
        bot.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tg.texts_to(9), vec!["echo: one", "echo: two"]);
    let channels = bot.channels();
    assert!(channels[0]["errors"].as_u64().unwrap() >= 1);
    assert!(
        !channels[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("SECRET"),
        "errors are redacted: {}",
        channels[0]
    );
    assert!(!bot.log().contains("SECRET"), "{}", bot.log());
}

#[test]
fn webhook_mode_checks_the_secret_and_deduplicates() {
    let mut bot = Bot::start(&[
        ("TELEGRAM_ALLOWED_CHATS", "4"),
        ("TELEGRAM_MODE", "webhook"),
        (
            "TELEGRAM_WEBHOOK_URL",
            "https://bot.example/channels/telegram/webhook",
        ),
        ("TELEGRAM_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ]);
    let tg = bot.telegram.clone();
    assert!(tg.wait(LIMIT, |t| !t.calls("setWebhook").is_empty()));
    let set = &tg.calls("setWebhook")[0];
    assert_eq!(set["url"], "https://bot.example/channels/telegram/webhook");
    assert_eq!(set["secret_token"], WEBHOOK_SECRET);
    assert!(
        tg.calls("getUpdates").is_empty(),
        "no polling in webhook mode"
    );

    let url = format!("{}/channels/telegram/webhook", bot.install.gateway_url());
    let update = tg.make_update(4, "pushed");
    let body = update.to_string();
    let (status, _) = request("POST", &url, &[], body.as_bytes());
    assert_eq!(status, 401, "no secret");
    let (status, _) = request(
        "POST",
        &url,
        &[("X-Telegram-Bot-Api-Secret-Token", "hook-secret_43")],
        body.as_bytes(),
    );
    assert_eq!(status, 401, "wrong secret");
    std::thread::sleep(Duration::from_millis(300));
    assert!(tg.sent().is_empty(), "refused requests are not answered");

    let secret = [("X-Telegram-Bot-Api-Secret-Token", WEBHOOK_SECRET)];
    let (status, _) = request("POST", &url, &secret, body.as_bytes());
    assert_eq!(status, 200);
    // Telegram delivers again when unsure: answered once.
    let (status, _) = request("POST", &url, &secret, body.as_bytes());
    assert_eq!(status, 200);
    assert!(
        tg.wait(LIMIT, |t| t.texts_to(4).len() == 1),
        "{}",
        bot.log()
    );
    let (status, _) = request("POST", &url, &secret, b"not json");
    assert_eq!(status, 400);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tg.texts_to(4), vec!["echo: pushed"]);
    assert_eq!(bot.channels()[0]["mode"], "webhook");

    // Back to long polling: the webhook is deleted first.
    bot.kill_gateway();
    bot.install
        .extra
        .push(("TELEGRAM_MODE".into(), "long_polling".into()));
    bot.start_gateway();
    assert!(tg.wait(LIMIT, |t| !t.calls("getUpdates").is_empty()));
    assert!(!tg.calls("deleteWebhook").is_empty());
    let (status, _) = request("POST", &url, &secret, body.as_bytes());
    assert_eq!(status, 404, "no webhook route in long-polling mode");
}

#[test]
fn with_no_allowed_chats_nobody_is_answered_until_paired() {
    let bot = Bot::start(&[]);
    let tg = &bot.telegram;
    tg.push_text(-55, "hello, group?");
    let log_path = bot.log_path();
    assert!(
        wait_until(LIMIT, || std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("Telegram chat -55 is not in TELEGRAM_ALLOWED_CHATS")),
        "a group gets no code, only a log line: {}",
        bot.log()
    );
    assert!(bot.log().contains("TELEGRAM_ALLOWED_CHATS is empty"));

    tg.push_text(55, "hello?");
    tg.push_text(55, "anyone?");
    assert!(
        tg.wait(LIMIT, |t| !t.texts_to(55).is_empty()),
        "{}",
        bot.log()
    );
    assert!(
        tg.wait(LIMIT, |t| t.calls("getUpdates").len() >= 3),
        "the offset moved on"
    );
    let code_message = tg.texts_to(55);
    assert_eq!(code_message.len(), 1, "one code, however often they write");
    assert!(tg.texts_to(-55).is_empty());

    // The owner sees the request and approves it with `ocg pair`.
    let pair = |args: &[&str]| {
        let out = bot
            .install
            .command("ocg")
            .arg("pair")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, listed) = pair(&["list", "--json"]);
    assert!(ok, "{listed}");
    let requests: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let code = requests[0]["code"].as_str().unwrap().to_owned();
    assert!(code_message[0].contains(&code), "{}", code_message[0]);
    assert_eq!(requests[0]["channel"], "telegram");
    assert_eq!(requests[0]["entry"], "55");
    let (ok, wrong) = pair(&["approve", "ZZZZZZZZ"]);
    assert!(
        !ok && wrong.contains("no pending pairing request"),
        "{wrong}"
    );
    let (ok, approved) = pair(&["approve", &code.to_lowercase()]);
    assert!(ok && approved.contains("approved"), "{approved}");
    assert!(tg.wait(LIMIT, |t| t.texts_to(55).len() >= 2));
    assert!(
        tg.texts_to(55)[1].contains("approved"),
        "{:?}",
        tg.texts_to(55)
    );
    let config = std::fs::read_to_string(bot.install.path("env.config")).unwrap();
    assert!(
        config.lines().any(|l| l == "TELEGRAM_ALLOWED_CHATS=55"),
        "the approval is saved: {config}"
    );
    let (_, listed) = pair(&["list"]);
    assert!(listed.contains("no pairing requests"), "{listed}");

    // Now they are answered, and still after a restart (from env.config).
    tg.push_text(55, "now?");
    assert!(
        tg.wait(LIMIT, |t| t.texts_to(55).len() >= 3),
        "{}",
        bot.log()
    );
    assert_eq!(tg.texts_to(55)[2], "echo: now?");
    let mut bot = bot;
    bot.terminate_gateway();
    bot.start_gateway();
    bot.telegram.push_text(55, "still?");
    assert!(
        bot.telegram.wait(LIMIT, |t| t.texts_to(55).len() >= 4),
        "{}",
        bot.log()
    );
    assert_eq!(bot.telegram.texts_to(55)[3], "echo: still?");
}

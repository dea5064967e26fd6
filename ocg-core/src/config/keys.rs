//! The documented keys: name, default and meaning.

/// One documented config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key.
    pub name: &'static str,
    /// Built-in default (`$HOME` is expanded).
    pub default: Option<&'static str>,
    /// What it means.
    pub doc: &'static str,
}

const fn key(name: &'static str, default: Option<&'static str>, doc: &'static str) -> KeySpec {
    KeySpec { name, default, doc }
}

/// Every key OCG reads. `OCG_*` keys not listed here are rejected as typos.
pub const KEYS: &[KeySpec] = &[
    key("OCG_CONFIG", None, "path of the env.config file"),
    key("OCG_HOST", Some("127.0.0.1"), "gateway bind address"),
    key("OCG_PORT", Some("55003"), "gateway port"),
    key(
        "OCG_ALLOW_PUBLIC_BIND",
        Some("false"),
        "allow a non-loopback OCG_HOST",
    ),
    key(
        "OCG_AGENT_SOCK",
        Some("/tmp/ocg-agent.sock"),
        "the agent's Unix socket",
    ),
    key(
        "OCG_PID_DIR",
        Some("/tmp/ocg"),
        "pid files and announced addresses",
    ),
    key(
        "OCG_LOG_DIR",
        Some("/tmp"),
        "service logs ocg-<service>.log",
    ),
    key(
        "OCG_DATA_DIR",
        Some("$HOME/.ocg"),
        "database, indexes, models, workspace",
    ),
    key(
        "OCG_EMBEDDING_PORT",
        Some("50000"),
        "first port the embedding service tries",
    ),
    key(
        "OCG_EMBEDDING_PORT_MAX",
        Some("60000"),
        "last port the embedding service tries",
    ),
    key(
        "OCG_EMBEDDING_TOKEN",
        None,
        "token of the embedding service (generated at first start)",
    ),
    key(
        "OCG_EMBEDDING_URL",
        None,
        "embedding service URL (default: announced address)",
    ),
    key(
        "OCG_START_TIMEOUT",
        Some("30"),
        "seconds a service may take to become healthy",
    ),
    key("OCG_UI_TOKEN", None, "gateway token for the web UI and API"),
    key("OCG_HOOKS_TOKEN", None, "token for webhook ingress"),
    key(
        "OCG_HOOKS_SESSION_PREFIXES",
        Some("hook:"),
        "session key prefixes webhooks may use, comma-separated",
    ),
    key(
        "OCG_TRUSTED_PROXIES",
        None,
        "proxies whose X-Forwarded-For is believed",
    ),
    key(
        "OCG_WORKSPACE",
        None,
        "root directory of the agent's tools (default $OCG_DATA_DIR/workspace)",
    ),
    key(
        "OCG_TOOLS_ALLOW",
        None,
        "tools or groups (fs, exec, web, memory, sessions) offered; default all",
    ),
    key("OCG_TOOLS_DENY", None, "tools or groups never offered"),
    key(
        "OCG_EXEC_ALLOW",
        None,
        "programs exec may run: absolute paths, resolved",
    ),
    key(
        "OCG_EXEC_SANDBOX",
        Some("true"),
        "confine exec/process programs by the kernel (false runs them unconfined)",
    ),
    key(
        "OCG_EXEC_NETWORK",
        Some("false"),
        "let exec/process programs open network sockets",
    ),
    key("OCG_EXEC_SHELL", Some("false"), "let exec run sh -c"),
    key(
        "OCG_MCP_CONFIG",
        None,
        "the MCP servers' file (mcpServers shape; default $OCG_DATA_DIR/mcp.json)",
    ),
    key(
        "OCG_EXEC_TIMEOUT",
        Some("30"),
        "default exec timeout in seconds",
    ),
    key(
        "OCG_EXEC_MAX_TIMEOUT",
        Some("600"),
        "largest exec timeout in seconds",
    ),
    key(
        "OCG_TOOL_OUTPUT_MAX",
        Some("32768"),
        "bytes of a tool result kept (head and tail)",
    ),
    key(
        "OCG_WEB_ALLOW_PRIVATE",
        Some("false"),
        "let web_fetch reach loopback and private addresses",
    ),
    key("OCG_AGENT_ADDR", None, "optional TCP address of the agent"),
    key(
        "OCG_CHANNEL_LEASE_SECS",
        Some("15"),
        "how long a gateway's hold on the channels lasts unrenewed (shared store)",
    ),
    key(
        "OCG_AGENTS",
        None,
        "agents a gateway uses over TCP (host:port, comma-separated)",
    ),
    key("OCG_AUTO_RECALL", None, "recall memories before each turn"),
    key("OCG_RECALL_LIMIT", None, "memories recalled per turn"),
    key("OCG_RECALL_MINSCORE", None, "minimum recall score"),
    key(
        "OCG_DATABASE",
        None,
        "the agent's SQLite database (default $OCG_DATA_DIR/ocg.db)",
    ),
    key("OCG_SCHEDULER", Some("true"), "run scheduled jobs"),
    key(
        "OCG_SCHEDULER_LEASE_SECS",
        Some("60"),
        "seconds a run stays claimed without renewal",
    ),
    key(
        "OCG_HEARTBEAT_EVERY",
        None,
        "heartbeat interval (30m, 1h); off when unset",
    ),
    key(
        "OCG_HEARTBEAT_SESSION",
        Some("heartbeat"),
        "session of the heartbeat's turns (telegram:<chat> delivers there)",
    ),
    key(
        "OCG_HEARTBEAT_FILE",
        None,
        "heartbeat checklist (default $OCG_WORKSPACE/HEARTBEAT.md)",
    ),
    key("OCG_SYSTEM_PROMPT", None, "the agent's system prompt"),
    key(
        "OCG_CONTEXT_WINDOW",
        None,
        "the chat model's context window in tokens",
    ),
    key(
        "OCG_MAX_TOKENS",
        Some("1024"),
        "tokens reserved for each answer",
    ),
    key("OCG_MAX_TOOL_ROUNDS", Some("8"), "tool rounds per turn"),
    key(
        "OCG_COMPACTION_THRESHOLD",
        Some("0.75"),
        "compact past this share of the window",
    ),
    key(
        "OCG_LLM_TIMEOUT",
        Some("120"),
        "seconds an LLM request may stay silent",
    ),
    key(
        "OCG_PROVIDERS",
        None,
        "provider order, e.g. openai,anthropic",
    ),
    key(
        "OCG_CHAT_MODEL_PATH",
        Some("$HOME/.cache/ocg/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        "local GGUF chat model",
    ),
    key(
        "OCG_LLAMA_THREADS",
        None,
        "CPU threads of local llama-server children",
    ),
    key(
        "OCG_AGENT_TOKEN",
        None,
        "token of the agent's TCP listener (and of OCG_AGENTS)",
    ),
    key(
        "LLAMA_SERVER_BIN",
        Some("$HOME/.cache/ocg/bin/llama-server"),
        "the llama.cpp llama-server program",
    ),
    key(
        "LLAMA_PORT",
        None,
        "fixed llama-server port (default: first free in 18000-19000)",
    ),
    key(
        "EMBEDDING_MODEL_PATH",
        Some("$HOME/.cache/ocg/models/all-minilm-l6-v2-f16.gguf"),
        "GGUF embedding model",
    ),
    key("OPENAI_API_KEY", None, "OpenAI-compatible provider key"),
    key("OPENAI_BASE_URL", None, "OpenAI-compatible provider URL"),
    key("OPENAI_MODEL", None, "OpenAI-compatible model"),
    key("API_KEY", None, "fallback for OPENAI_API_KEY"),
    key("BASE_URL", None, "fallback for OPENAI_BASE_URL"),
    key("MODEL", None, "fallback for OPENAI_MODEL"),
    key("ANTHROPIC_API_KEY", None, "Anthropic key"),
    key("ANTHROPIC_BASE_URL", None, "Anthropic API URL"),
    key("ANTHROPIC_MODEL", None, "Anthropic model"),
    key("TELEGRAM_BOT_TOKEN", None, "Telegram bot token"),
    key(
        "TELEGRAM_MODE",
        Some("long_polling"),
        "Telegram updates by long_polling or webhook",
    ),
    key(
        "TELEGRAM_API_URL",
        Some("https://api.telegram.org"),
        "Telegram Bot API server",
    ),
    key(
        "TELEGRAM_ALLOWED_CHATS",
        None,
        "comma-separated Telegram chat ids answered (empty: none)",
    ),
    key(
        "TELEGRAM_WEBHOOK_URL",
        None,
        "public URL of the gateway's Telegram webhook",
    ),
    key(
        "TELEGRAM_WEBHOOK_SECRET",
        None,
        "secret Telegram sends with each webhook request",
    ),
    key(
        "OCG_PAIRING",
        Some("on"),
        "strangers writing to a channel directly get a pairing code (on) or nothing (off)",
    ),
    key(
        "IRC_SERVER",
        None,
        "IRC server as host:port (6697 with IRC_TLS)",
    ),
    key(
        "IRC_TLS",
        Some("true"),
        "connect to the IRC server over TLS",
    ),
    key(
        "IRC_TLS_CA",
        None,
        "PEM file of extra certificate authorities to trust for IRC (a private server)",
    ),
    key("IRC_NICK", Some("ocg"), "the bot's IRC nick"),
    key(
        "IRC_PASSWORD",
        None,
        "IRC server password (PASS), or SASL PLAIN password",
    ),
    key("IRC_CHANNELS", None, "comma-separated IRC channels to join"),
    key(
        "IRC_ALLOWED",
        None,
        "comma-separated nick!user@host masks (globs) or account:NAME answered on IRC",
    ),
    key(
        "MATRIX_HOMESERVER",
        None,
        "Matrix homeserver's client API URL (https://matrix.example.org)",
    ),
    key(
        "MATRIX_USER_ID",
        None,
        "the bot's Matrix user id (@ocg:example.org)",
    ),
    key(
        "MATRIX_ACCESS_TOKEN",
        None,
        "access token of the bot's Matrix account (or MATRIX_PASSWORD)",
    ),
    key(
        "MATRIX_PASSWORD",
        None,
        "password of the bot's Matrix account, to log in with once",
    ),
    key(
        "MATRIX_ALLOWED",
        None,
        "comma-separated Matrix user ids (@*:server for a whole server) or room ids answered",
    ),
    key(
        "OCG_DATABASE_URL",
        None,
        "postgres://… : the agent's memories in PostgreSQL with pgvector (sslmode=require to another machine)",
    ),
    key(
        "DISCORD_BOT_TOKEN",
        None,
        "Discord bot token (the Bot page of your application)",
    ),
    key(
        "DISCORD_ALLOWED",
        None,
        "comma-separated Discord user ids, channel:<id> or guild:<id> answered",
    ),
    key(
        "DISCORD_API_URL",
        Some("https://discord.com/api"),
        "Discord REST API base, without the version",
    ),
    key(
        "SLACK_BOT_TOKEN",
        None,
        "Slack bot token (xoxb-…) for the Web API",
    ),
    key(
        "SLACK_APP_TOKEN",
        None,
        "Slack app-level token (xapp-…, connections:write): Socket Mode",
    ),
    key(
        "SLACK_SIGNING_SECRET",
        None,
        "Slack signing secret: the Events API over HTTP instead of Socket Mode",
    ),
    key(
        "SLACK_ALLOWED",
        None,
        "comma-separated Slack user ids (U…) or channel ids (C…, G…, D…) answered",
    ),
    key(
        "SLACK_API_URL",
        Some("https://slack.com/api"),
        "Slack Web API base",
    ),
    key(
        "EMAIL_IMAP_SERVER",
        None,
        "IMAP server as host:port (993 with EMAIL_TLS) for the email channel",
    ),
    key(
        "EMAIL_SMTP_SERVER",
        None,
        "SMTP server as host:port (465 with EMAIL_TLS; STARTTLS on other ports)",
    ),
    key(
        "EMAIL_USERNAME",
        None,
        "the bot's mail account, for IMAP and SMTP",
    ),
    key("EMAIL_PASSWORD", None, "password of the bot's mail account"),
    key(
        "EMAIL_FROM",
        None,
        "address the bot's mail comes from (default: EMAIL_USERNAME)",
    ),
    key(
        "EMAIL_ALLOWED",
        None,
        "comma-separated sender addresses (or @domain) answered by email",
    ),
    key(
        "EMAIL_TLS",
        Some("true"),
        "TLS to the mail servers (false only toward this machine)",
    ),
    key(
        "EMAIL_TLS_CA",
        None,
        "PEM file of extra certificate authorities to trust for IMAP and SMTP (a private server)",
    ),
    key(
        "OCG_EMBED_MAX_BATCH",
        Some("256"),
        "texts per /embed call and items per upsert",
    ),
    key(
        "OCG_EMBED_MAX_BODY_BYTES",
        Some("16777216"),
        "largest request body of the embedding service",
    ),
    key(
        "OCG_EMBED_MAX_TOP_K",
        Some("1000"),
        "largest top_k of a vector search",
    ),
    key(
        "OCG_EMBED_MAX_TOKENS",
        Some("512"),
        "longest text in tokens (llama-server batch size)",
    ),
    key(
        "OCG_EMBED_SLOTS",
        Some("4"),
        "parallel sequences of the embedding llama-server",
    ),
    key(
        "OCG_HNSW_THRESHOLD",
        Some("10000"),
        "collection size from which search uses HNSW",
    ),
    key("OCG_HNSW_M", Some("32"), "HNSW links per node"),
    key(
        "OCG_HNSW_EF_CONSTRUCTION",
        Some("40"),
        "HNSW candidate list size while building",
    ),
    key(
        "OCG_HNSW_EF_SEARCH",
        Some("64"),
        "HNSW candidate list size while searching",
    ),
    key(
        "OCG_INDEX_SNAPSHOT_SECS",
        Some("60"),
        "seconds between writes of changed vector indexes",
    ),
];

pub(crate) fn find(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == name)
}

/// The known key closest to `name` by edit distance, if close enough to be a typo.
pub(crate) fn closest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|spec| (edit_distance(name, spec.name), spec.name))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

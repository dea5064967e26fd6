//! Who may talk to the agent through a channel: one allow-list per channel
//! and one pairing flow for all of them.
//!
//! - An [`AllowList`] holds a channel's entries (Telegram chat ids, IRC host
//!   masks or accounts, Matrix user ids, email addresses), read from the
//!   channel's config key (`TELEGRAM_ALLOWED_CHATS`, `IRC_ALLOWED`, …). Each
//!   channel matches its own entries, since what "matches" means differs
//!   (an IRC mask is a glob).
//! - [`Pairing`]: an unknown sender writing directly to the bot gets a short
//!   one-time code and nothing else. The owner approves the code
//!   (`ocg pair approve CODE`, the web UI's Status page, or
//!   `POST /api/pairing/{code}/approve`), which adds the sender's entry to
//!   the running allow-list and to the env file (0600, atomic).
//!
//! Limits: a code lives one hour; a sender gets one code at a time (writing
//! again while it is pending gets no answer); a channel has at most
//! [`MAX_PENDING_PER_CHANNEL`] codes pending, and further strangers are not
//! answered until one is approved, denied or expired. Codes are 8 characters
//! of Crockford's base 32, without look-alikes (40 bits, from the OS
//! random generator), and they are only ever checked behind the UI token.
//! Pending requests are kept in `$OCG_DATA_DIR/channels/pairing.json`
//! (0600, atomic), so a restart does not void a code in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use ocg_core::config::env_file::{self, write_private_atomic};
use ocg_core::{ChatTarget, Error, OutgoingMessage, Result, TextFormat};
use serde::{Deserialize, Serialize};

use crate::lock;
use crate::status::now_ms;

/// How long a pairing code is valid, in milliseconds.
pub const CODE_TTL_MS: u64 = 60 * 60 * 1000;
/// Codes pending at once per channel.
pub const MAX_PENDING_PER_CHANNEL: usize = 3;
/// The alphabet of codes (Crockford's base 32: no I, L, O or U; an O typed
/// for a 0, or an I or L for a 1, is read as meant).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a code.
const CODE_LEN: usize = 8;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A channel's allow-list: the entries of its config key, plus the ones
/// approved while running.
#[derive(Debug)]
pub struct AllowList {
    key: String,
    entries: RwLock<Vec<String>>,
}

impl AllowList {
    /// The list of config key `key` (for approvals to write to) with
    /// `entries`.
    pub fn new(key: impl Into<String>, entries: impl IntoIterator<Item = String>) -> Self {
        let mut list: Vec<String> = Vec::new();
        for entry in entries {
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
        AllowList {
            key: key.into(),
            entries: RwLock::new(list),
        }
    }

    /// The config key the entries come from.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `entry` is on the list exactly.
    pub fn contains(&self, entry: &str) -> bool {
        read(&self.entries).iter().any(|e| e == entry)
    }

    /// Whether any entry satisfies `matches` (an IRC mask, say).
    pub fn any(&self, matches: impl Fn(&str) -> bool) -> bool {
        read(&self.entries).iter().any(|e| matches(e))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        read(&self.entries).len()
    }

    /// Whether the list is empty (nobody is answered).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries, comma-separated, as the config key holds them.
    fn value(&self) -> String {
        read(&self.entries).join(",")
    }

    fn add(&self, entry: &str) -> bool {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.iter().any(|e| e == entry) {
            return false;
        }
        entries.push(entry.to_owned());
        true
    }
}

/// Senders refused so far, so that each is logged once (bounded: past
/// 10,000 the rest are not logged).
#[derive(Debug, Default)]
pub struct Refusals(Mutex<std::collections::HashSet<String>>);

impl Refusals {
    /// Whether `sender` is refused for the first time (and is to be logged).
    pub fn first(&self, sender: &str) -> bool {
        let mut seen = lock(&self.0);
        seen.len() < 10_000 && seen.insert(sender.to_owned())
    }
}

/// An unknown sender waiting for the owner's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRequest {
    /// The one-time code the sender was given.
    pub code: String,
    /// The channel (`telegram`, `irc`, …).
    pub channel: String,
    /// What approval adds to the channel's allow-list.
    pub entry: String,
    /// Who it is, for the owner to recognise (a name, a nick, an address).
    pub sender: String,
    /// Where the sender is told about the approval.
    pub chat: ChatTarget,
    /// Unix time (ms) the code was given.
    pub created_at_ms: u64,
    /// Unix time (ms) after which the code is void.
    pub expires_at_ms: u64,
}

/// The pairing flow of all channels (see the module docs).
#[derive(Debug)]
pub struct Pairing {
    /// The env file approvals are written to; `None` keeps them in memory.
    config_file: Option<PathBuf>,
    state_file: PathBuf,
    lists: RwLock<HashMap<String, Arc<AllowList>>>,
    requests: Mutex<Vec<PairingRequest>>,
}

impl Pairing {
    /// Pairing whose pending requests live in `state_file` and whose
    /// approvals are written to the env file `config_file`.
    pub fn open(state_file: &Path, config_file: Option<PathBuf>) -> std::io::Result<Self> {
        let requests = match std::fs::read(state_file) {
            Ok(bytes) => serde_json::from_slice::<Vec<PairingRequest>>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %state_file.display(), "ignoring unreadable pairing requests: {e}");
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Pairing {
            config_file,
            state_file: state_file.to_owned(),
            lists: RwLock::default(),
            requests: Mutex::new(requests),
        })
    }

    /// Let approvals for `channel` add to `list`.
    pub fn register(&self, channel: &str, list: Arc<AllowList>) {
        self.lists
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(channel.to_owned(), list);
    }

    /// [`challenge`](Self::challenge) as the plain message to send to
    /// `chat`.
    pub fn code_message(
        &self,
        channel: &str,
        entry: &str,
        sender: &str,
        chat: ChatTarget,
    ) -> Option<OutgoingMessage> {
        let text = self.challenge(channel, entry, sender, &chat)?;
        Some(OutgoingMessage {
            target: chat,
            text,
            format: TextFormat::Plain,
            reply_to: None,
        })
    }

    /// An unknown sender wrote directly to the bot: the message to send
    /// them (their code), or `None` when they are to get no answer (a code
    /// is pending for them already, or the channel has too many pending).
    /// `entry` is what approval would allow, `sender` how to show them.
    pub fn challenge(
        &self,
        channel: &str,
        entry: &str,
        sender: &str,
        chat: &ChatTarget,
    ) -> Option<String> {
        let now = now_ms();
        let mut requests = lock(&self.requests);
        requests.retain(|r| r.expires_at_ms > now);
        if requests
            .iter()
            .any(|r| r.channel == channel && r.entry == entry)
        {
            return None;
        }
        if requests.iter().filter(|r| r.channel == channel).count() >= MAX_PENDING_PER_CHANNEL {
            tracing::warn!(
                channel,
                "{MAX_PENDING_PER_CHANNEL} pairing codes are pending already: a new sender is not answered"
            );
            return None;
        }
        let code = match new_code() {
            Ok(code) => code,
            Err(e) => {
                tracing::error!(channel, "no pairing code: {e}");
                return None;
            }
        };
        requests.push(PairingRequest {
            code: code.clone(),
            channel: channel.to_owned(),
            entry: entry.to_owned(),
            sender: sender.to_owned(),
            chat: chat.clone(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(CODE_TTL_MS),
        });
        self.save(&requests);
        tracing::info!(
            channel,
            sender,
            "an unknown sender was given a pairing code: `ocg pair list` shows it, `ocg pair approve CODE` allows them"
        );
        Some(format!(
            "Hi! I only answer people my owner has approved. Your pairing code is {code}: \
             ask my owner to run `ocg pair approve {code}` (valid for one hour)."
        ))
    }

    /// The requests waiting for approval, oldest first.
    pub fn pending(&self) -> Vec<PairingRequest> {
        let now = now_ms();
        lock(&self.requests)
            .iter()
            .filter(|r| !r.code.is_empty() && r.expires_at_ms > now)
            .cloned()
            .collect()
    }

    /// Approve `code`: its sender is added to the channel's allow-list, in
    /// memory at once and in the env file. Returns the request.
    pub fn approve(&self, code: &str) -> Result<PairingRequest> {
        let channel = self.find(code)?.channel;
        let list = read(&self.lists).get(&channel).cloned();
        let Some(list) = list else {
            return Err(Error::Unavailable {
                service: channel,
                message: "the channel is not running in this gateway".into(),
            });
        };
        let request = self.take(code)?;
        if list.add(&request.entry) {
            if let Some(path) = &self.config_file {
                // The file's current value: entries the owner added by hand
                // since the start are kept.
                let mut value = env_file::EnvFile::read(path)
                    .ok()
                    .and_then(|f| f.get(list.key()).map(str::to_owned))
                    .unwrap_or_else(|| list.value());
                let present = value.split(',').any(|e| e.trim() == request.entry.as_str());
                if !present {
                    if !value.trim().is_empty() {
                        value.push(',');
                    }
                    value.push_str(&request.entry);
                }
                env_file::set_key(path, list.key(), &value).map_err(|e| {
                    Error::Io(std::io::Error::other(format!(
                        "approved until the gateway restarts, but not saved: {e}"
                    )))
                })?;
            }
        }
        tracing::info!(channel = %request.channel, sender = %request.sender, "pairing approved");
        Ok(request)
    }

    /// Refuse `code`; the sender can ask again after it would have expired.
    pub fn deny(&self, code: &str) -> Result<PairingRequest> {
        let mut request = self.take(code)?;
        // Keep a tombstone for the rest of the hour, so that the denied
        // sender does not get a fresh code with their next message.
        request.code = String::new();
        let mut requests = lock(&self.requests);
        requests.push(request.clone());
        self.save(&requests);
        Ok(request)
    }

    /// The live request with `code` (case-insensitive; dashes and spaces
    /// ignored; O read as 0, I and L as 1).
    fn position(requests: &[PairingRequest], code: &str) -> Result<usize> {
        let wanted: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect();
        let now = now_ms();
        requests
            .iter()
            .position(|r| !r.code.is_empty() && r.code == wanted && r.expires_at_ms > now)
            .ok_or_else(|| {
                Error::NotFound(
                    "no pending pairing request has this code (it may have expired)".into(),
                )
            })
    }

    fn find(&self, code: &str) -> Result<PairingRequest> {
        let requests = lock(&self.requests);
        Ok(requests[Self::position(&requests, code)?].clone())
    }

    fn take(&self, code: &str) -> Result<PairingRequest> {
        let mut requests = lock(&self.requests);
        let index = Self::position(&requests, code)?;
        let request = requests.remove(index);
        self.save(&requests);
        Ok(request)
    }

    fn save(&self, requests: &[PairingRequest]) {
        let result = serde_json::to_vec(requests)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.state_file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_private_atomic(&self.state_file, &bytes)
            });
        if let Err(e) = result {
            tracing::warn!(file = %self.state_file.display(), "pairing requests not saved: {e}");
        }
    }
}

fn new_code() -> std::result::Result<String, getrandom::Error> {
    let mut bytes = [0u8; CODE_LEN];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairing(dir: &Path) -> Pairing {
        Pairing::open(
            &dir.join("channels/pairing.json"),
            Some(dir.join("env.config")),
        )
        .unwrap()
    }

    #[test]
    fn an_approved_code_allows_the_sender_at_once_and_in_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.config"), "TELEGRAM_ALLOWED_CHATS=1\n").unwrap();
        let pairing = pairing(dir.path());
        let list = Arc::new(AllowList::new("TELEGRAM_ALLOWED_CHATS", ["1".to_owned()]));
        pairing.register("telegram", list.clone());
        let chat = ChatTarget::chat("42");
        let message = pairing.challenge("telegram", "42", "Ann", &chat).unwrap();
        let code = pairing.pending()[0].code.clone();
        assert!(message.contains(&code), "{message}");
        assert_eq!(code.len(), CODE_LEN);
        assert_eq!(
            pairing.challenge("telegram", "42", "Ann", &chat),
            None,
            "one code at a time"
        );
        // A restart keeps the request.
        let pairing = self::pairing(dir.path());
        pairing.register("telegram", list.clone());
        assert_eq!(pairing.pending().len(), 1);
        assert!(matches!(
            pairing.approve("WRONG123"),
            Err(Error::NotFound(_))
        ));
        let lower = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
        let approved = pairing.approve(&lower).unwrap();
        assert_eq!((approved.entry.as_str(), approved.chat), ("42", chat));
        assert!(list.contains("42"));
        let file = std::fs::read_to_string(dir.path().join("env.config")).unwrap();
        assert_eq!(file, "TELEGRAM_ALLOWED_CHATS=1,42\n");
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir.path().join("env.config")), 0o600);
        assert_eq!(mode(&dir.path().join("channels/pairing.json")), 0o600);
        assert!(pairing.pending().is_empty());
        assert!(pairing.approve(&code).is_err(), "a code works once");
    }

    #[test]
    fn strangers_are_rate_limited_and_denied_ones_stay_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let pairing = pairing(dir.path());
        pairing.register("irc", Arc::new(AllowList::new("IRC_ALLOWED", [])));
        let chat = |n: usize| ChatTarget::chat(format!("nick{n}"));
        for n in 0..MAX_PENDING_PER_CHANNEL {
            assert!(
                pairing
                    .challenge("irc", &format!("e{n}"), "x", &chat(n))
                    .is_some()
            );
        }
        assert_eq!(
            pairing.challenge("irc", "e9", "x", &chat(9)),
            None,
            "too many pending"
        );
        assert!(
            pairing.challenge("telegram", "e9", "x", &chat(9)).is_some(),
            "the limit is per channel"
        );
        let code = pairing.pending()[0].code.clone();
        pairing.deny(&code).unwrap();
        assert_eq!(
            pairing.challenge("irc", "e0", "x", &chat(0)),
            None,
            "a denied sender gets no new code within the hour"
        );
        assert!(pairing.pending().iter().all(|r| r.entry != "e0"));
    }

    #[test]
    fn approving_for_a_channel_that_is_not_running_keeps_nothing_half_done() {
        let dir = tempfile::tempdir().unwrap();
        let pairing = pairing(dir.path());
        pairing.challenge("matrix", "@a:x", "a", &ChatTarget::chat("!r:x"));
        let code = pairing.pending()[0].code.clone();
        assert!(matches!(
            pairing.approve(&code),
            Err(Error::Unavailable { .. })
        ));
        assert!(!dir.path().join("env.config").exists());
        assert_eq!(pairing.pending().len(), 1, "the request is still pending");
    }
}

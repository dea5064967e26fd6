//! A real Matrix homeserver for the channel tests and benchmarks (Synapse
//! from PyPI, on SQLite, on a temporary port), and people on it: clients of
//! its client-server API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{free_port, http_send_with, wait_until};

/// How long the helpers wait for the server.
const LIMIT: Duration = Duration::from_secs(60);
/// The homeserver's name (user ids end in `:ocg.test`).
pub const SERVER_NAME: &str = "ocg.test";

/// The Python that has Synapse: `OCG_TEST_SYNAPSE_PYTHON` (set by
/// `scripts/test.sh`), else the venv the script makes in the cache.
fn python() -> PathBuf {
    crate::cached("OCG_TEST_SYNAPSE_PYTHON", "py-synapse/bin/python")
}

/// A real Synapse on a temporary port, its database in a temporary
/// directory; registration is open (no verification) and rate limits are
/// out of the way, for the tests only.
#[derive(Debug)]
pub struct Synapse {
    dir: tempfile::TempDir,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    child: Option<Child>,
}

impl Synapse {
    /// Start one.
    pub fn start() -> Synapse {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let unlimited = "{per_second: 100000, burst_count: 100000}";
        std::fs::write(
            dir.path().join("homeserver.yaml"),
            format!(
                "server_name: \"{SERVER_NAME}\"\npid_file: {d}/homeserver.pid\n\
                 listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    resources:\n      - names: [client]\n        compress: false\n\
                 database:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
                 media_store_path: {d}/media\nsigning_key_path: {d}/signing.key\n\
                 enable_registration: true\nenable_registration_without_verification: true\n\
                 report_stats: false\nmacaroon_secret_key: \"test-macaroon\"\nform_secret: \"test-form\"\n\
                 trusted_key_servers: []\nsuppress_key_server_warning: true\npresence:\n  enabled: false\n\
                 rc_message: {unlimited}\nrc_registration: {unlimited}\n\
                 rc_login:\n  address: {unlimited}\n  account: {unlimited}\n  failed_attempts: {unlimited}\n\
                 rc_joins:\n  local: {unlimited}\n\
                 rc_invites:\n  per_room: {unlimited}\n  per_user: {unlimited}\n  per_issuer: {unlimited}\n"
            ),
        )
        .unwrap();
        let status = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(dir.path().join("homeserver.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("Synapse's Python (scripts/test.sh installs matrix-synapse)");
        assert!(status.success(), "synapse --generate-keys");
        let mut synapse = Synapse {
            dir,
            port,
            child: None,
        };
        synapse.run();
        synapse
    }

    /// The client-server API's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and database.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("synapse.log"))
            .unwrap();
        let child = Command::new(python())
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(self.dir.path().join("homeserver.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Synapse's Python (scripts/test.sh installs matrix-synapse)");
        self.child = Some(child);
        let url = format!("{}/_matrix/client/versions", self.url());
        assert!(
            wait_until(LIMIT, || crate::http_get(&url)
                .is_some_and(|(s, _)| s == 200)),
            "synapse answers: {}",
            self.log()
        );
    }

    /// What Synapse wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default()
    }

    /// SIGKILL it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new account `name` with `password`; signed in.
    pub fn register(&self, name: &str, password: &str) -> Person {
        let body =
            json!({"username": name, "password": password, "auth": {"type": "m.login.dummy"}});
        let (status, answer) = http_send_with(
            "POST",
            &format!("{}/_matrix/client/v3/register", self.url()),
            &[],
            body.to_string().as_bytes(),
        )
        .expect("synapse answers /register");
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        Person {
            url: self.url(),
            user_id: answer["user_id"].as_str().unwrap().to_owned(),
            token: answer["access_token"].as_str().unwrap().to_owned(),
            txn: AtomicU64::new(0),
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One person's client of the homeserver.
#[derive(Debug)]
pub struct Person {
    url: String,
    /// `@name:ocg.test`.
    pub user_id: String,
    token: String,
    txn: AtomicU64,
}

/// A message a person sees in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub sender: String,
    pub msgtype: String,
    pub body: String,
    pub content: Value,
}

impl Person {
    /// `method path` with a JSON `body`: the status and the answer.
    pub fn call(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, answer) = http_send_with(
            method,
            &format!("{}/_matrix/client/v3{path}", self.url),
            &[("Authorization", &auth)],
            &bytes,
        )
        .unwrap_or((0, String::new()));
        (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
    }

    fn ok(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, answer) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    /// A new room with `invite` invited (a direct chat when `direct`),
    /// end-to-end encrypted when `encrypted`: its id.
    pub fn create_room(&self, invite: &[&str], direct: bool, encrypted: bool) -> String {
        let mut body = json!({"preset": "private_chat", "invite": invite, "is_direct": direct});
        if encrypted {
            body["initial_state"] = json!([{
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }]);
        }
        let answer = self.ok("POST", "/createRoom", &body);
        answer["room_id"].as_str().unwrap().to_owned()
    }

    /// Accept an invitation to `room`.
    pub fn join(&self, room: &str) {
        self.ok("POST", &format!("/rooms/{}/join", encode(room)), &json!({}));
    }

    /// Invite `user` to `room`.
    pub fn invite(&self, room: &str, user: &str) {
        self.ok(
            "POST",
            &format!("/rooms/{}/invite", encode(room)),
            &json!({"user_id": user}),
        );
    }

    /// Send an event of `kind` to `room`: its id.
    pub fn send_event(&self, room: &str, kind: &str, content: &Value) -> String {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let answer = self.ok(
            "PUT",
            &format!("/rooms/{}/send/{kind}/t{txn}", encode(room)),
            content,
        );
        answer["event_id"].as_str().unwrap().to_owned()
    }

    /// Say `text` in `room`.
    pub fn say(&self, room: &str, text: &str) -> String {
        self.send_event(
            room,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": text}),
        )
    }

    /// Who has joined `room`.
    pub fn members(&self, room: &str) -> Vec<String> {
        let (_, answer) = self.call(
            "GET",
            &format!("/rooms/{}/joined_members", encode(room)),
            &Value::Null,
        );
        answer["joined"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The messages of `room` from `sender`, oldest first.
    pub fn from(&self, room: &str, sender: &str) -> Vec<Seen> {
        let (_, answer) = self.call(
            "GET",
            &format!("/rooms/{}/messages?dir=f&limit=1000", encode(room)),
            &Value::Null,
        );
        answer["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.message" && e["sender"] == sender)
            .map(|e| Seen {
                sender: sender.to_owned(),
                msgtype: e["content"]["msgtype"].as_str().unwrap_or("").to_owned(),
                body: e["content"]["body"].as_str().unwrap_or("").to_owned(),
                content: e["content"].clone(),
            })
            .collect()
    }

    /// `/sync` from `since` (`None`: now, without history), held up to
    /// `wait_ms` by the server: the bodies of the new `m.room.message`
    /// events from `sender`, and the next token.
    pub fn sync_from(
        &self,
        since: Option<&str>,
        sender: &str,
        wait_ms: u64,
    ) -> (Vec<String>, String) {
        let filter = encode(r#"{"room":{"timeline":{"limit":0}},"presence":{"types":[]}}"#);
        let path = match since {
            Some(since) => format!("/sync?since={}&timeout={wait_ms}", encode(since)),
            None => format!("/sync?filter={filter}&timeout=0"),
        };
        let (_, answer) = self.call("GET", &path, &Value::Null);
        let mut bodies = Vec::new();
        for room in answer["rooms"]["join"]
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
        {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if event["type"] == "m.room.message" && event["sender"] == sender {
                    bodies.push(event["content"]["body"].as_str().unwrap_or("").to_owned());
                }
            }
        }
        (
            bodies,
            answer["next_batch"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Wait until `condition` holds for the messages of `sender` in `room`.
    pub fn wait(&self, room: &str, sender: &str, condition: impl Fn(&[Seen]) -> bool) -> bool {
        wait_until(Duration::from_secs(30), || {
            condition(&self.from(room, sender))
        })
    }
}

/// `text` as one URL path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

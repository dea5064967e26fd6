//! A real IRC server for the channel tests and benchmarks (Debian's
//! ngircd, on a temporary port), and a person on it: an IRC client on a
//! plain socket that records what it receives.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{free_port, wait_until};

/// How long the helpers wait for the server or a line.
const LIMIT: Duration = Duration::from_secs(20);

/// A real ngircd on a temporary port, configured in a temporary directory.
#[derive(Debug)]
pub struct Ircd {
    dir: tempfile::TempDir,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    /// Where it listens with TLS, when started with [`Ircd::start_tls`].
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

impl Ircd {
    /// Start one.
    pub fn start() -> Ircd {
        let dir = tempfile::tempdir().unwrap();
        let mut ircd = Ircd {
            port: free_port(),
            tls_port: None,
            dir,
            child: None,
        };
        ircd.run();
        ircd
    }

    /// Start one that also listens with TLS, its certificate (for
    /// `localhost` and 127.0.0.1) issued by a test authority of its own
    /// ([`crate::test_certificates`]): [`Ircd::ca`].
    pub fn start_tls() -> Ircd {
        let dir = tempfile::tempdir().unwrap();
        crate::test_certificates(dir.path());
        let mut ircd = Ircd {
            port: free_port(),
            tls_port: Some(free_port()),
            dir,
            child: None,
        };
        ircd.run();
        ircd
    }

    /// The test authority's certificate (PEM), for `IRC_TLS_CA`.
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Start (again) on the same port.
    pub fn run(&mut self) {
        let config = self.dir.path().join("ngircd.conf");
        std::fs::write(
            &config,
            format!(
                "[Global]\nName = irc.ocg.test\nInfo = OCG test server\nListen = 127.0.0.1\n\
                 Ports = {port}\nPidFile = {dir}/ngircd.pid\nMotdPhrase = \"test server\"\n\
                 [Limits]\nMaxConnectionsIP = 0\nMaxNickLength = 30\nPingTimeout = 120\nPongTimeout = 20\n\
                 [Options]\nPAM = no\nIdent = no\nDNS = no\n{ssl}",
                port = self.port,
                dir = self.dir.path().display(),
                ssl = self.tls_port.map_or_else(String::new, |tls| format!(
                    "[SSL]\nCertFile = {dir}/leaf.pem\nKeyFile = {dir}/leaf.key\nPorts = {tls}\n",
                    dir = self.dir.path().display()
                )),
            ),
        )
        .unwrap();
        let child = Command::new("ngircd")
            .args(["--nodaemon", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ngircd (Debian package ngircd; scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "ngircd listens"
        );
        if let Some(tls) = self.tls_port {
            assert!(
                wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", tls)).is_ok()),
                "ngircd listens with TLS"
            );
        }
    }

    /// SIGKILL it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Ircd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line a human saw: who sent it, the command, the target, the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub from: String,
    pub command: String,
    pub target: String,
    pub text: String,
}

/// A person on IRC: a client connection with everything it received.
#[derive(Debug)]
pub struct Human {
    nick: String,
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Every line received.
    pub raw: Arc<Mutex<Vec<String>>>,
}

impl Human {
    pub fn connect(port: u16, nick: &str) -> Human {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let human = Human {
            nick: nick.to_owned(),
            stream,
            seen: Arc::default(),
            raw: Arc::default(),
        };
        let reader = BufReader::new(human.stream.try_clone().unwrap());
        let mut pong = human.stream.try_clone().unwrap();
        let (seen, raw) = (human.seen.clone(), human.raw.clone());
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                raw.lock().unwrap().push(line.clone());
                let mut words = line.splitn(4, ' ');
                let first = words.next().unwrap_or_default();
                if first == "PING" {
                    let _ = write!(pong, "PONG {}\r\n", &line[5..]);
                    continue;
                }
                let (Some(command), Some(target), Some(text)) =
                    (words.next(), words.next(), words.next())
                else {
                    continue;
                };
                if command == "PRIVMSG" || command == "NOTICE" {
                    let from = first.trim_start_matches(':');
                    seen.lock().unwrap().push(Seen {
                        from: from.split('!').next().unwrap_or(from).to_owned(),
                        command: command.to_owned(),
                        target: target.to_owned(),
                        text: text.strip_prefix(':').unwrap_or(text).to_owned(),
                    });
                }
            }
        });
        human.send(&format!("NICK {nick}"));
        human.send(&format!("USER {nick} 0 * :A human"));
        assert!(
            human.wait(|h| h.raw_contains(" 001 ")),
            "registered: {:?}",
            human.raw.lock().unwrap()
        );
        human
    }

    pub fn send(&self, line: &str) {
        (&self.stream)
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    pub fn say(&self, target: &str, text: &str) {
        self.send(&format!("PRIVMSG {target} :{text}"));
    }

    pub fn join(&self, channel: &str) {
        self.send(&format!("JOIN {channel}"));
        let me = format!(":{}!", self.nick);
        assert!(
            self.wait(|h| h.joined(&me, channel)),
            "{:?}",
            self.raw.lock().unwrap()
        );
    }

    /// Whether the server relayed a JOIN of `channel` by `who` (`:nick!`).
    pub fn joined(&self, who: &str, channel: &str) -> bool {
        self.raw.lock().unwrap().iter().any(|l| {
            l.starts_with(who)
                && l.contains(" JOIN ")
                && l.trim_end().trim_end_matches(channel).ends_with([' ', ':'])
        })
    }

    pub fn raw_contains(&self, needle: &str) -> bool {
        self.raw.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// What `from` sent, in order.
    pub fn from(&self, from: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.from.eq_ignore_ascii_case(from))
            .cloned()
            .collect()
    }

    pub fn wait(&self, condition: impl Fn(&Human) -> bool) -> bool {
        wait_until(LIMIT, || condition(self))
    }
}

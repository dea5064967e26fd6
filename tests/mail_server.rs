//! Real mail servers for the email channel's tests and benchmarks:
//! Debian's Dovecot (IMAP) and aiosmtpd from PyPI (SMTP, delivering into
//! the Maildirs Dovecot serves), on temporary ports; and people who send
//! mail by SMTP and read what they received in their Maildir.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

/// The Python that has aiosmtpd: `OCG_TEST_AIOSMTPD_PYTHON` (set by
/// `scripts/test.sh`), else the venv the script makes in the cache.
fn python() -> PathBuf {
    crate::cached("OCG_TEST_AIOSMTPD_PYTHON", "py-aiosmtpd/bin/python")
}

fn id(flag: &str, user: Option<&str>) -> String {
    let out = Command::new("id")
        .arg(flag)
        .args(user)
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Dovecot and an SMTP server sharing one mail root; accounts `name` with
/// password `name-password`, addresses `name@localhost`.
#[derive(Debug)]
pub struct MailServers {
    dir: tempfile::TempDir,
    /// Dovecot's IMAP port (plain text, 127.0.0.1).
    pub imap_port: u16,
    /// The SMTP server's port (127.0.0.1).
    pub smtp_port: u16,
    dovecot: Option<Child>,
    smtp: Option<Child>,
    runs: u32,
    tls: bool,
}

impl MailServers {
    /// Start both, with the accounts `users`.
    pub fn start(users: &[&str]) -> MailServers {
        Self::start_with(users, false)
    }

    /// Start both offering STARTTLS, with a certificate for `localhost`
    /// from a test authority of their own: [`MailServers::ca`].
    pub fn start_tls(users: &[&str]) -> MailServers {
        Self::start_with(users, true)
    }

    /// The test authority's certificate (PEM), for `EMAIL_TLS_CA`.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(users: &[&str], tls: bool) -> MailServers {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o777)).unwrap();
        let lines: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{u}-password::::{}/{u}\n", mail.display()))
            .collect();
        std::fs::write(dir.path().join("users"), lines).unwrap();
        if tls {
            crate::test_certificates(dir.path());
        }
        let mut servers = MailServers {
            dir,
            imap_port: free_port(),
            smtp_port: free_port(),
            dovecot: None,
            smtp: None,
            runs: 0,
            tls,
        };
        servers.run_imap();
        servers.run_smtp();
        servers
    }

    fn mail_root(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Start Dovecot (again) on the same port and mail.
    pub fn run_imap(&mut self) {
        self.runs += 1;
        let d = self.dir.path();
        // A fresh run directory: a killed master leaves its sockets behind.
        let run = d.join(format!("run{}", self.runs));
        let root = id("-u", None) == "0";
        // Dovecot refuses to run logins as root, and mail as uid 0.
        let (login, internal, group) = if root {
            (
                "dovenull".to_owned(),
                "dovecot".to_owned(),
                "dovecot".to_owned(),
            )
        } else {
            (id("-un", None), id("-un", None), id("-gn", None))
        };
        let (uid, gid) = if root {
            (id("-u", Some("dovecot")), id("-g", Some("dovecot")))
        } else {
            (id("-u", None), id("-g", None))
        };
        let config = format!(
            "base_dir = {run}\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\n{ssl}disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:~/Maildir\n\
             default_login_user = {login}\ndefault_internal_user = {internal}\ndefault_internal_group = {group}\n\
             first_valid_uid = 0\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%n {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={mail}/%n\n}}\n",
            run = run.display(),
            d = d.display(),
            port = self.imap_port,
            mail = self.mail_root().display(),
            ssl = if self.tls {
                format!(
                    "ssl = yes\nssl_cert = <{d}/leaf.pem\nssl_key = <{d}/leaf.key\n",
                    d = d.display()
                )
            } else {
                "ssl = no\n".into()
            },
        );
        std::fs::write(d.join("dovecot.conf"), config).unwrap();
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (Debian package dovecot-imapd; scripts/test.sh installs it)");
        self.dovecot = Some(child);
        let port = self.imap_port;
        assert!(
            wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "dovecot listens: {}",
            std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
        );
    }

    fn run_smtp(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smtp_maildir.py");
        let child = Command::new(python())
            .arg(script)
            .arg(self.smtp_port.to_string())
            .arg(self.mail_root())
            .arg(self.dir.path().join("users"))
            .args(if self.tls {
                vec![
                    self.dir.path().join("leaf.pem"),
                    self.dir.path().join("leaf.key"),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd's Python (scripts/test.sh installs aiosmtpd)");
        self.smtp = Some(child);
        let port = self.smtp_port;
        assert!(
            wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "the SMTP server listens"
        );
    }

    /// SIGKILL Dovecot (the IMAP server goes away).
    pub fn kill_imap(&mut self) {
        if let Some(mut child) = self.dovecot.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.imap_port;
        wait_until(LIMIT, || TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// Send `raw` (headers and body, `\n` line ends) from `from` to `to`
    /// through the SMTP server.
    pub fn send(&self, from: &str, to: &str, raw: &str) {
        let stream = TcpStream::connect(("127.0.0.1", self.smtp_port)).unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut expect = |code: &str| loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(
                line.starts_with(code),
                "SMTP: expected {code}, got {line:?}"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        };
        expect("220");
        let mut say = |line: &str, code: &str| {
            write!(writer, "{line}\r\n").unwrap();
            expect(code);
        };
        say("EHLO human.test", "250");
        say(&format!("MAIL FROM:<{from}>"), "250");
        say(&format!("RCPT TO:<{to}>"), "250");
        say("DATA", "354");
        let body: String = raw
            .lines()
            .map(|l| {
                if l.starts_with('.') {
                    format!(".{l}\r\n")
                } else {
                    format!("{l}\r\n")
                }
            })
            .collect();
        say(&format!("{body}."), "250");
        say("QUIT", "221");
    }

    /// The mail `user` received, oldest first (raw).
    pub fn received(&self, user: &str) -> Vec<Vec<u8>> {
        let maildir = self.mail_root().join(user).join("Maildir");
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(maildir.join(sub)).into_iter().flatten())
            .filter_map(|e| Some(e.ok()?.path()))
            .collect();
        // Names start with the delivery time in nanoseconds.
        files.sort_by_key(|p| {
            p.file_name()
                .and_then(|n| n.to_str()?.split('.').next()?.parse::<u128>().ok())
                .unwrap_or(0)
        });
        files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        self.kill_imap();
        if let Some(mut child) = self.smtp.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! The few IMAP4rev1 commands (RFC 3501, with IDLE from RFC 2177) the email
//! channel needs: log in, select the inbox, find and fetch new messages by
//! UID, and wait for new ones.
//!
//! Every read has a deadline; a response line is at most 64 KiB and a
//! literal (a message) at most [`MAX_LITERAL`] bytes, so a misbehaving
//! server cannot make the gateway hold unbounded memory.

use std::time::Duration;

use base64::Engine;
use ocg_core::config::Secret;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;

/// Largest literal read (the partial fetch asks for at most 1 MiB).
pub(super) const MAX_LITERAL: usize = 2 * 1024 * 1024;
/// Bytes of a message fetched: enough for any text mail, not for a video.
const FETCH_BYTES: usize = 1024 * 1024;
const MAX_LINE: u64 = 64 * 1024;
const DEADLINE: Duration = Duration::from_secs(60);

/// Why an IMAP exchange failed.
#[derive(Debug)]
pub(super) enum ImapError {
    /// The connection failed or the server spoke out of turn: retry later.
    Lost(String),
    /// The server answered `NO`/`BAD` (to a login: wrong credentials).
    Refused(String),
}

impl std::fmt::Display for ImapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapError::Lost(why) => write!(f, "{why}"),
            ImapError::Refused(why) => write!(f, "the IMAP server refused: {why}"),
        }
    }
}

type Result<T> = std::result::Result<T, ImapError>;

fn lost(what: &str) -> impl Fn(std::io::Error) -> ImapError + '_ {
    move |e| ImapError::Lost(format!("{what}: {e}"))
}

pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Security {
    /// TLS from the first byte (port 993).
    Tls,
    /// Plain, then `STARTTLS` (required).
    StartTls,
    /// Plain text (only accepted toward this machine).
    Plain,
}

/// One response line, with its literals (`{n}` blocks) taken out.
#[derive(Debug, Default)]
pub(super) struct Line {
    /// The text, each literal replaced by `{}`.
    pub text: String,
    pub literals: Vec<Vec<u8>>,
}

/// A selected mailbox's identity and next UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Selected {
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// An IMAP connection.
pub(super) struct Imap {
    stream: BufReader<Box<dyn Stream>>,
    tag: u32,
    capabilities: Vec<String>,
}

impl std::fmt::Debug for Imap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// `text` as an IMAP quoted string; `None` when it cannot be one.
fn quoted(text: &str) -> Option<String> {
    if text.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The number after `key` in `text` (`[UIDNEXT 7]`, `UID 7`).
pub(super) fn number_after(text: &str, key: &str) -> Option<u32> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find(key)? + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

impl Imap {
    /// Connect to `host:port`, read the greeting, secure the connection.
    pub(super) async fn connect(
        host: &str,
        port: u16,
        security: Security,
        tls: &TlsConnector,
    ) -> Result<Imap> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| ImapError::Lost(format!("connecting to {host}:{port} timed out")))?
        .map_err(|e| ImapError::Lost(format!("cannot connect to {host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match security {
            Security::Tls => Box::new(secure(tcp, host, tls).await?),
            Security::StartTls | Security::Plain => Box::new(tcp),
        };
        let mut imap = Imap {
            stream: BufReader::new(stream),
            tag: 0,
            capabilities: Vec::new(),
        };
        let greeting = imap.read_line(DEADLINE).await?;
        if greeting.text.starts_with("* BYE") {
            return Err(ImapError::Lost(format!(
                "the server hung up: {}",
                greeting.text
            )));
        }
        if security == Security::StartTls {
            imap.command("STARTTLS").await?;
            let plain = imap.stream.into_inner();
            imap = Imap {
                stream: BufReader::new(Box::new(secure(plain, host, tls).await?)),
                tag: imap.tag,
                capabilities: Vec::new(),
            };
        }
        imap.refresh_capabilities().await?;
        Ok(imap)
    }

    async fn refresh_capabilities(&mut self) -> Result<()> {
        let untagged = self.command("CAPABILITY").await?;
        self.capabilities = untagged
            .iter()
            .filter_map(|l| l.text.strip_prefix("* CAPABILITY "))
            .flat_map(str::split_whitespace)
            .map(str::to_ascii_uppercase)
            .collect();
        Ok(())
    }

    /// Whether the server announced `capability`.
    pub(super) fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Log in: `AUTHENTICATE PLAIN` where offered, else `LOGIN`.
    pub(super) async fn login(&mut self, user: &str, password: &Secret) -> Result<()> {
        if self.has("AUTH=PLAIN") && self.has("SASL-IR") {
            let plain = format!("\0{user}\0{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
            self.command(&format!("AUTHENTICATE PLAIN {encoded}"))
                .await?;
        } else {
            let (Some(user), Some(password)) = (quoted(user), quoted(password.expose())) else {
                return Err(ImapError::Refused(
                    "the user name or password has a line break".into(),
                ));
            };
            self.command(&format!("LOGIN {user} {password}")).await?;
        }
        // Servers may announce more once logged in.
        self.refresh_capabilities().await
    }

    /// `SELECT mailbox`.
    pub(super) async fn select(&mut self, mailbox: &str) -> Result<Selected> {
        let name = quoted(mailbox).ok_or_else(|| ImapError::Refused("bad mailbox".into()))?;
        let untagged = self.command(&format!("SELECT {name}")).await?;
        let find = |key: &str| untagged.iter().find_map(|l| number_after(&l.text, key));
        Ok(Selected {
            uid_validity: find("[UIDVALIDITY")
                .ok_or_else(|| ImapError::Lost("SELECT gave no UIDVALIDITY".into()))?,
            uid_next: find("[UIDNEXT").unwrap_or(1),
        })
    }

    /// The UIDs from `first` on, ascending.
    pub(super) async fn uids_from(&mut self, first: u32) -> Result<Vec<u32>> {
        let untagged = self.command(&format!("UID SEARCH UID {first}:*")).await?;
        let mut uids: Vec<u32> = untagged
            .iter()
            .filter_map(|l| l.text.strip_prefix("* SEARCH"))
            .flat_map(str::split_whitespace)
            .filter_map(|n| n.parse().ok())
            // `n:*` matches the last message even when its UID is below n.
            .filter(|uid| *uid >= first)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The message `uid` (its first MiB), without marking it seen; `None`
    /// when it is gone.
    pub(super) async fn fetch(&mut self, uid: u32) -> Result<Option<Vec<u8>>> {
        let untagged = self
            .command(&format!(
                "UID FETCH {uid} (UID BODY.PEEK[]<0.{FETCH_BYTES}>)"
            ))
            .await?;
        Ok(untagged
            .into_iter()
            .find(|l| l.text.contains(" FETCH ") && number_after(&l.text, "UID ") == Some(uid))
            .and_then(|l| l.literals.into_iter().next()))
    }

    /// Wait up to `limit` for the mailbox to change (`IDLE`); whether it
    /// did. Without IDLE, waits `limit` and asks with `NOOP`.
    pub(super) async fn wait_for_mail(&mut self, limit: Duration) -> Result<bool> {
        if !self.has("IDLE") {
            tokio::time::sleep(limit).await;
            let untagged = self.command("NOOP").await?;
            return Ok(untagged.iter().any(|l| l.text.ends_with(" EXISTS")));
        }
        self.tag += 1;
        let tag = format!("i{}", self.tag);
        self.write(&format!("{tag} IDLE")).await?;
        loop {
            let line = self.read_line(DEADLINE).await?;
            if line.text.starts_with('+') {
                break;
            }
            if line.text.starts_with(&tag) {
                return Err(ImapError::Lost(format!("IDLE refused: {}", line.text)));
            }
        }
        let changed = loop {
            match tokio::time::timeout(limit, self.read_line(Duration::MAX)).await {
                Err(_) => break false,
                Ok(line) => {
                    let line = line?;
                    if line.text.starts_with("* BYE") {
                        return Err(ImapError::Lost(format!(
                            "the server hung up: {}",
                            line.text
                        )));
                    }
                    if line.text.ends_with(" EXISTS") {
                        break true;
                    }
                }
            }
        };
        self.write("DONE").await?;
        loop {
            let line = self.read_line(DEADLINE).await?;
            if line.text.starts_with(&tag) {
                return Ok(changed);
            }
        }
    }

    async fn write(&mut self, line: &str) -> Result<()> {
        let out = self.stream.get_mut();
        let sent = async {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\r\n").await?;
            out.flush().await
        };
        tokio::time::timeout(DEADLINE, sent)
            .await
            .map_err(|_| ImapError::Lost("writing to the IMAP server timed out".into()))?
            .map_err(lost("writing to the IMAP server"))
    }

    /// Send `command`; the untagged lines before its `OK`.
    async fn command(&mut self, command: &str) -> Result<Vec<Line>> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.write(&format!("{tag} {command}")).await?;
        let mut untagged = Vec::new();
        loop {
            let line = self.read_line(DEADLINE).await?;
            let Some(status) = line
                .text
                .strip_prefix(&tag)
                .and_then(|s| s.strip_prefix(' '))
            else {
                if line.text.starts_with("* BYE") && !command.eq_ignore_ascii_case("LOGOUT") {
                    return Err(ImapError::Lost(format!(
                        "the server hung up: {}",
                        line.text
                    )));
                }
                untagged.push(line);
                continue;
            };
            let verb = command.split_whitespace().next().unwrap_or(command);
            return if status.starts_with("OK") {
                Ok(untagged)
            } else {
                Err(ImapError::Refused(format!("{verb}: {status}")))
            };
        }
    }

    /// One response line, reading its literals; waits up to `limit` for it.
    async fn read_line(&mut self, limit: Duration) -> Result<Line> {
        let read = async {
            let mut line = Line::default();
            loop {
                let mut raw = Vec::new();
                let n = (&mut self.stream)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut raw)
                    .await
                    .map_err(lost("reading from the IMAP server"))?;
                if n == 0 {
                    return Err(ImapError::Lost(
                        "the IMAP server closed the connection".into(),
                    ));
                }
                if !raw.ends_with(b"\n") {
                    return Err(ImapError::Lost(
                        "the IMAP server sent an overlong line".into(),
                    ));
                }
                let text = String::from_utf8_lossy(&raw);
                let text = text.trim_end_matches(['\r', '\n']);
                // A literal announced at the end of the line: `{123}`.
                let literal = text
                    .strip_suffix('}')
                    .and_then(|t| t.rsplit_once('{'))
                    .and_then(|(head, n)| {
                        Some((head, n.trim_end_matches('+').parse::<usize>().ok()?))
                    });
                match literal {
                    Some((head, size)) => {
                        if size > MAX_LITERAL {
                            return Err(ImapError::Lost(format!(
                                "the IMAP server sent a {size}-byte literal"
                            )));
                        }
                        line.text.push_str(head);
                        line.text.push_str("{}");
                        let mut bytes = vec![0; size];
                        self.stream
                            .read_exact(&mut bytes)
                            .await
                            .map_err(lost("reading from the IMAP server"))?;
                        line.literals.push(bytes);
                    }
                    None => {
                        line.text.push_str(text);
                        return Ok(line);
                    }
                }
            }
        };
        if limit == Duration::MAX {
            return read.await;
        }
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ImapError::Lost("the IMAP server did not answer in time".into()))?
    }
}

async fn secure<S: Stream + 'static>(
    tcp: S,
    host: &str,
    tls: &TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<S>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| ImapError::Lost(format!("{host}: {e}")))?;
    tls.connect(name, tcp)
        .await
        .map_err(|e| ImapError::Lost(format!("TLS with {host} failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_are_read_whole_and_commands_see_their_untagged_lines() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut imap = Imap {
            stream: BufReader::new(Box::new(client)),
            tag: 0,
            capabilities: Vec::new(),
        };
        let body = "Subject: hi\r\n\r\nline {5}\r\n";
        let script = format!(
            "* 1 FETCH (UID 7 BODY[]<0> {{{}}}\r\n{body})\r\na1 OK done\r\n",
            body.len()
        );
        server.write_all(script.as_bytes()).await.unwrap();
        let fetched = imap.fetch(7).await.unwrap().unwrap();
        assert_eq!(fetched, body.as_bytes());
        let mut sent = vec![0; 256];
        let n = server.read(&mut sent).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sent[..n]),
            format!("a1 UID FETCH 7 (UID BODY.PEEK[]<0.{FETCH_BYTES}>)\r\n")
        );
        server
            .write_all(b"* SEARCH 3 9 4\r\na2 OK\r\n")
            .await
            .unwrap();
        assert_eq!(imap.uids_from(4).await.unwrap(), vec![4, 9]);
        server
            .write_all(b"a3 NO [AUTHENTICATIONFAILED] no\r\n")
            .await
            .unwrap();
        assert!(matches!(
            imap.login("u", &Secret::new("p")).await,
            Err(ImapError::Refused(_))
        ));
    }

    #[test]
    fn quoting_and_numbers() {
        assert_eq!(quoted(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quoted("a\r\nb").is_none());
        assert_eq!(number_after("* OK [UIDNEXT 42] x", "[UIDNEXT"), Some(42));
        assert_eq!(number_after("* 1 FETCH (uid 7 BODY", "UID "), Some(7));
    }
}

//! What the email channel reads out of a received message (MIME decoding
//! by `mail-parser`): who sent it, which thread it belongs to, its new text
//! without the quoted history, and whether it is to be answered at all.

use mail_parser::MessageParser;
use serde::{Deserialize, Serialize};

/// How to answer a message in its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Thread {
    /// The message answered (`In-Reply-To` of the answer), without `<>`.
    pub message_id: Option<String>,
    /// Its `References` (oldest first), without `<>`.
    pub references: Vec<String>,
    /// Its subject.
    pub subject: String,
}

impl Thread {
    /// The id of the thread's first message: the session's thread.
    pub fn root(&self) -> Option<&str> {
        self.references
            .first()
            .or(self.message_id.as_ref())
            .map(String::as_str)
    }

    /// The `References` of an answer: ours, then the message answered.
    pub fn answer_references(&self) -> Vec<String> {
        let mut references = self.references.clone();
        references.extend(self.message_id.clone());
        references
    }

    /// The subject of an answer (`Re: …`, not `Re: Re: …`).
    pub fn answer_subject(&self) -> String {
        let subject = self.subject.trim();
        let lower = subject.to_ascii_lowercase();
        if subject.is_empty() {
            "Re: your message".into()
        } else if lower.starts_with("re:") {
            subject.to_owned()
        } else {
            format!("Re: {subject}")
        }
    }
}

/// A received message, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mail {
    /// The `From` address, lower-cased.
    pub from: String,
    pub thread: Thread,
    /// What the sender wrote, without the quoted history and signature.
    pub text: String,
    /// Sent by a program (auto-reply, bounce, mailing list): never answered.
    pub automatic: bool,
    /// The receiving server's verdict, when it says the sender is forged
    /// (`dmarc=fail`, or SPF failing without a passing DKIM signature).
    pub failed_authentication: Option<String>,
}

/// The text of a reply without what it quotes: lines quoted with `>`, an
/// attribution line (`On …, Ann wrote:`) before them, and everything from
/// a signature delimiter (`-- `) or an `Original Message` separator on.
pub(super) fn new_text(body: &str) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let mut kept = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_end();
        // `-- ` loses its space on the way (quoted-printable drops it).
        if trimmed == "--"
            || trimmed.contains("-----Original Message-----")
            || trimmed.starts_with("________________________________")
        {
            break;
        }
        if trimmed.ends_with("wrote:")
            && lines[n + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with('>'))
        {
            continue;
        }
        if trimmed.trim_start().starts_with('>') {
            continue;
        }
        kept.push(trimmed);
    }
    kept.join("\n").trim().to_owned()
}

/// The verdict of the topmost `Authentication-Results` (the one the
/// receiving server added; lower ones could come from anyone).
fn failed_authentication(results: Option<&str>) -> Option<String> {
    let results = results?.to_ascii_lowercase();
    let has = |what: &str| {
        results
            .split([';', ' ', '\t', '\r', '\n'])
            .any(|word| word == what)
    };
    if has("dmarc=fail") {
        return Some("dmarc=fail".into());
    }
    let no_dmarc = !results.contains("dmarc=");
    (no_dmarc && has("spf=fail") && !has("dkim=pass")).then(|| "spf=fail".into())
}

fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Read a raw message; `None` when it has no sender address.
pub(super) fn read(raw: &[u8]) -> Option<Mail> {
    let message = MessageParser::default().parse(raw)?;
    let from = message
        .from()?
        .first()?
        .address()?
        .trim()
        .to_ascii_lowercase();
    let header = |name: &str| {
        message
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let ids = |value: &mail_parser::HeaderValue| -> Vec<String> {
        value
            .as_text_list()
            .map(|l| l.iter().map(|id| strip_brackets(id)).collect())
            .unwrap_or_default()
    };
    let mut references = ids(message.references());
    if references.is_empty() {
        references = ids(message.in_reply_to());
    }
    let precedence = header("Precedence")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or_default();
    let automatic = header("Auto-Submitted").is_some_and(|v| !v.eq_ignore_ascii_case("no"))
        || matches!(precedence.as_str(), "bulk" | "list" | "junk")
        || header("List-Id").is_some()
        || header("Return-Path").is_some_and(|v| v == "<>")
        || matches!(local, "mailer-daemon" | "postmaster");
    let body = message.body_text(0).unwrap_or_default();
    Some(Mail {
        thread: Thread {
            message_id: message.message_id().map(strip_brackets),
            references,
            subject: message.subject().unwrap_or_default().to_owned(),
        },
        from,
        text: new_text(&body),
        automatic,
        failed_authentication: failed_authentication(header("Authentication-Results").as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_with_its_thread_and_without_its_quotes() {
        let raw = "Return-Path: <ann@example.org>\r\n\
            Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=example.org; dkim=pass\r\n\
            From: Ann <Ann@Example.org>\r\n\
            To: ocg@example.net\r\n\
            Subject: =?utf-8?q?Caf=C3=A9?=\r\n\
            Message-ID: <m2@example.org>\r\n\
            In-Reply-To: <r1@example.net>\r\n\
            References: <m1@example.org> <r1@example.net>\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Transfer-Encoding: quoted-printable\r\n\
            \r\n\
            Et demain, il fera beau =C3=A0 Paris ?\r\n\
            \r\n\
            On Tue, 1 Dec 2026, OCG <ocg@example.net> wrote:\r\n\
            > Paris is sunny today.\r\n\
            >> earlier\r\n\
            \r\n\
            -- \r\n\
            Ann\r\n";
        let mail = read(raw.as_bytes()).unwrap();
        assert_eq!(mail.from, "ann@example.org");
        assert_eq!(mail.text, "Et demain, il fera beau à Paris ?");
        assert_eq!(mail.thread.subject, "Café");
        assert_eq!(mail.thread.message_id.as_deref(), Some("m2@example.org"));
        assert_eq!(mail.thread.references, ["m1@example.org", "r1@example.net"]);
        assert_eq!(mail.thread.root(), Some("m1@example.org"));
        assert_eq!(mail.thread.answer_subject(), "Re: Café");
        assert_eq!(
            mail.thread.answer_references(),
            ["m1@example.org", "r1@example.net", "m2@example.org"]
        );
        assert!(!mail.automatic);
        assert_eq!(mail.failed_authentication, None);
    }

    #[test]
    fn programs_and_forgeries_are_recognized() {
        let mail = |headers: &str| {
            read(format!("From: x@example.org\r\n{headers}\r\nhello\r\n").as_bytes()).unwrap()
        };
        assert!(mail("Auto-Submitted: auto-replied\r\n").automatic);
        assert!(!mail("Auto-Submitted: no\r\n").automatic);
        assert!(mail("Precedence: bulk\r\n").automatic);
        assert!(mail("List-Id: <team.example.org>\r\n").automatic);
        assert_eq!(
            mail("Authentication-Results: mx; dmarc=fail header.from=example.org\r\n")
                .failed_authentication
                .as_deref(),
            Some("dmarc=fail")
        );
        assert_eq!(
            mail("Authentication-Results: mx; spf=fail; dkim=none\r\n")
                .failed_authentication
                .as_deref(),
            Some("spf=fail")
        );
        assert_eq!(
            mail("Authentication-Results: mx; spf=fail; dkim=pass\r\n").failed_authentication,
            None,
            "a valid signature is enough"
        );
        assert_eq!(
            mail("Authentication-Results: mx; dmarc=pass\r\nAuthentication-Results: evil; dmarc=fail\r\n")
                .failed_authentication,
            None,
            "only the topmost verdict counts"
        );
        let plain = mail("Subject: \r\n");
        assert_eq!(plain.thread.answer_subject(), "Re: your message");
        assert_eq!(plain.thread.root(), None);
        assert!(read(b"Subject: nobody\r\n\r\nhi\r\n").is_none());
    }
}

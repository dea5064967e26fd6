//! The IRC wire format (RFC 1459/2812 with IRCv3 message tags): parsing a
//! line, writing one, splitting text to the 512-byte line limit, and
//! matching host masks.

/// Longest line on the wire, `\r\n` included (RFC 2812 §2.3).
pub(crate) const LINE_LIMIT: usize = 512;

/// One parsed IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Message {
    /// IRCv3 tags (`account`, `msgid`, …), unescaped.
    pub tags: Vec<(String, String)>,
    /// `nick!user@host` or a server name, without the `:`.
    pub prefix: Option<String>,
    /// The command or numeric, upper-cased.
    pub command: String,
    /// Parameters, the trailing one included.
    pub params: Vec<String>,
}

impl Message {
    /// Parse one line (without `\r\n`); `None` for an empty or malformed one.
    pub fn parse(line: &str) -> Option<Message> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        let mut message = Message::default();
        if let Some(tagged) = rest.strip_prefix('@') {
            let (tags, after) = tagged.split_once(' ')?;
            message.tags = tags
                .split(';')
                .filter(|t| !t.is_empty())
                .map(|t| match t.split_once('=') {
                    Some((k, v)) => (k.to_owned(), unescape_tag(v)),
                    None => (t.to_owned(), String::new()),
                })
                .collect();
            rest = after.trim_start_matches(' ');
        }
        if let Some(prefixed) = rest.strip_prefix(':') {
            let (prefix, after) = prefixed.split_once(' ')?;
            message.prefix = Some(prefix.to_owned());
            rest = after.trim_start_matches(' ');
        }
        let (command, mut params) = match rest.split_once(' ') {
            Some((command, params)) => (command, params),
            None => (rest, ""),
        };
        if command.is_empty() {
            return None;
        }
        message.command = command.to_ascii_uppercase();
        loop {
            params = params.trim_start_matches(' ');
            if params.is_empty() {
                break;
            }
            if let Some(trailing) = params.strip_prefix(':') {
                message.params.push(trailing.to_owned());
                break;
            }
            match params.split_once(' ') {
                Some((param, after)) => {
                    message.params.push(param.to_owned());
                    params = after;
                }
                None => {
                    message.params.push(params.to_owned());
                    break;
                }
            }
        }
        Some(message)
    }

    /// The value of tag `name`, when present.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The nick of the prefix (`nick` of `nick!user@host`).
    pub fn nick(&self) -> Option<&str> {
        let prefix = self.prefix.as_deref()?;
        Some(prefix.split(['!', '@']).next().unwrap_or(prefix))
    }

    /// Parameter `n`, or `""`.
    pub fn param(&self, n: usize) -> &str {
        self.params.get(n).map_or("", String::as_str)
    }
}

fn unescape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A command line with `params`; the last one is sent as trailing (`:`).
/// Line breaks and NULs inside parameters are replaced by spaces: they would
/// end the line early and let text inject commands.
pub(crate) fn line(command: &str, params: &[&str]) -> String {
    let clean = |p: &str| p.replace(['\r', '\n', '\0'], " ");
    let mut out = command.to_owned();
    for (n, param) in params.iter().enumerate() {
        let param = clean(param);
        out.push(' ');
        if n + 1 == params.len()
            && (param.is_empty() || param.contains(' ') || param.starts_with(':'))
        {
            out.push(':');
        }
        out.push_str(&param);
    }
    out
}

/// Room for the text of one `PRIVMSG target :text` when the server relays
/// it as `:prefix PRIVMSG target :text\r\n` to the others.
pub(crate) fn text_budget(prefix_len: usize, target: &str) -> usize {
    // ':' prefix ' ' "PRIVMSG" ' ' target ' ' ':' text "\r\n"
    let overhead = 1 + prefix_len + 1 + "PRIVMSG".len() + 1 + target.len() + 2 + 2;
    LINE_LIMIT.saturating_sub(overhead).max(16)
}

/// `text` as lines of at most `budget` bytes each: one or more per line of
/// the text (IRC has no line breaks inside a message), cut at a space where
/// one is near, and never inside a UTF-8 character. Empty lines are dropped.
pub(crate) fn split(text: &str, budget: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line.trim_end();
        while rest.len() > budget {
            let mut cut = budget;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // A space in the last quarter is a nicer place to break.
            if let Some(space) = rest[..cut].rfind(' ')
                && space >= cut * 3 / 4
            {
                cut = space;
            }
            out.push(rest[..cut].trim_end().to_owned());
            rest = rest[cut..].trim_start();
        }
        if !rest.trim().is_empty() {
            out.push(rest.to_owned());
        }
    }
    out
}

/// Markdown as IRC shows it: `**bold**` and `__bold__` in IRC bold (`\x02`),
/// code fences dropped (their content kept), headings and list markers kept
/// as plain text.
pub(crate) fn markdown_to_irc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        if line.trim_start().starts_with("```") {
            continue;
        }
        let line = match line.strip_prefix('#') {
            Some(heading) => format!("\x02{}\x02", heading.trim_start_matches('#').trim_start()),
            None => line.to_owned(),
        };
        let mut bold = false;
        let mut rest = line.as_str();
        while let Some(at) = rest.find("**").or_else(|| rest.find("__")) {
            out.push_str(&rest[..at]);
            out.push('\x02');
            bold = !bold;
            rest = &rest[at + 2..];
        }
        out.push_str(rest);
        if bold {
            out.push('\x02');
        }
    }
    out
}

/// Whether `nick!user@host` matches the IRC mask `mask` (`*` any run, `?`
/// any one character; case-insensitive as IRC compares nicks).
pub(crate) fn mask_matches(mask: &str, who: &str) -> bool {
    fn fold(c: char) -> char {
        // RFC 1459 casemapping: {}|^ are the lower case of []\~.
        match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        }
    }
    let pattern: Vec<char> = mask.chars().map(fold).collect();
    let text: Vec<char> = who.chars().map(fold).collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            p += 1;
            mark = t;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_with_tags_prefix_and_trailing() {
        let m = Message::parse(
            "@account=ann;msgid=a\\sb :ann!~a@host.example PRIVMSG #ocg :hello there :)\r\n",
        )
        .unwrap();
        assert_eq!(m.tag("account"), Some("ann"));
        assert_eq!(m.tag("msgid"), Some("a b"));
        assert_eq!(m.nick(), Some("ann"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, ["#ocg", "hello there :)"]);
        let ping = Message::parse("PING :irc.example").unwrap();
        assert_eq!((ping.prefix, ping.command.as_str()), (None, "PING"));
        assert_eq!(ping.params, ["irc.example"]);
        let numeric = Message::parse(":srv 433 * ocg :Nickname is already in use").unwrap();
        assert_eq!(numeric.param(1), "ocg");
        assert!(Message::parse("").is_none());
        assert!(Message::parse(":only-a-prefix").is_none());
    }

    #[test]
    fn written_lines_cannot_carry_a_second_command() {
        assert_eq!(line("PRIVMSG", &["#a", "hi"]), "PRIVMSG #a hi");
        assert_eq!(line("PRIVMSG", &["#a", "hi there"]), "PRIVMSG #a :hi there");
        assert_eq!(
            line("PRIVMSG", &["bob", "x\r\nQUIT :bye"]),
            "PRIVMSG bob :x  QUIT :bye"
        );
        assert_eq!(line("PRIVMSG", &["bob", ":)"]), "PRIVMSG bob ::)");
    }

    #[test]
    fn long_text_is_split_within_the_byte_budget_never_inside_a_character() {
        let text = "é".repeat(300) + "\n\nshort line\n" + &"word ".repeat(200);
        let budget = text_budget("ocg!~ocg@127.0.0.1".len(), "#ocg");
        let pieces = split(&text, budget);
        assert!(pieces.iter().all(|p| p.len() <= budget && !p.is_empty()));
        assert_eq!(pieces.concat().matches('é').count(), 300, "nothing lost");
        assert!(pieces.contains(&"short line".to_owned()));
        let words: usize = pieces.iter().map(|p| p.matches("word").count()).sum();
        assert_eq!(words, 200);
        assert!(
            pieces
                .iter()
                .filter(|p| p.starts_with("word"))
                .all(|p| !p.ends_with("wor")),
            "cut at spaces"
        );
        // The whole relayed line stays within 512 bytes.
        let relayed = format!(":ocg!~ocg@127.0.0.1 PRIVMSG #ocg :{}\r\n", pieces[0]);
        assert!(relayed.len() <= LINE_LIMIT, "{}", relayed.len());
    }

    #[test]
    fn masks_match_like_irc_servers_do() {
        assert!(mask_matches("ann!*@*", "Ann!~a@host"));
        assert!(mask_matches("*!*@127.0.0.1", "x!y@127.0.0.1"));
        assert!(mask_matches("a?n!*@*.example", "ann!u@h.example"));
        assert!(mask_matches("[x]!*@*", "{X}!u@h"), "RFC 1459 case mapping");
        assert!(!mask_matches("ann!*@*", "anna!u@h"));
        assert!(!mask_matches("*!*@trusted", "ann!u@trusted.evil"));
    }

    #[test]
    fn markdown_becomes_irc_bold() {
        assert_eq!(markdown_to_irc("a **b** c"), "a \x02b\x02 c");
        assert_eq!(markdown_to_irc("```\ncode\n```"), "\ncode\n");
        assert_eq!(markdown_to_irc("**open"), "\x02open\x02");
        assert_eq!(markdown_to_irc("## Title\ntext"), "\x02Title\x02\ntext");
    }
}

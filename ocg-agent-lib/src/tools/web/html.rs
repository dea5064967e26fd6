//! HTML to readable text, for `web_fetch`: a small converter (a full HTML5
//! parser such as `html5ever` is more than this needs: the model wants the
//! words, headings and links).

use reqwest::Url;

/// Elements whose content is never text for a reader.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "iframe", "object", "canvas", "select",
];

/// Elements that start and end a block of text.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "html",
    "main",
    "nav",
    "ol",
    "p",
    "section",
    "summary",
    "table",
    "tbody",
    "thead",
    "tfoot",
    "title",
    "ul",
];

/// Text being assembled, with whitespace collapsed as a browser would.
struct TextOut {
    text: String,
    space: bool,
}

impl TextOut {
    fn word(&mut self, s: &str) {
        if self.space && !self.text.is_empty() && !self.text.ends_with(['\n', ' ']) {
            self.text.push(' ');
        }
        self.space = false;
        self.text.push_str(s);
    }

    fn text(&mut self, s: &str, pre: bool) {
        if pre {
            self.text.push_str(s);
            self.space = false;
            return;
        }
        let mut first = true;
        for piece in s.split(|c: char| c.is_whitespace()) {
            if !first {
                self.space = true;
            }
            first = false;
            if !piece.is_empty() {
                self.word(piece);
            }
        }
    }

    /// End the line; `blank` leaves an empty line after it.
    fn newline(&mut self, blank: bool) {
        while self.text.ends_with(' ') {
            self.text.pop();
        }
        self.space = false;
        if self.text.is_empty() {
            return;
        }
        let want = if blank { 2 } else { 1 };
        let have = self.text.len() - self.text.trim_end_matches('\n').len();
        for _ in have..want {
            self.text.push('\n');
        }
    }
}

/// The character a numeric reference stands for, as HTML decodes it: NUL,
/// surrogates and numbers past Unicode are U+FFFD; 0x80 to 0x9F are read as
/// the windows-1252 characters that pages meant by them.
fn numeric_reference(code: u32) -> char {
    const WINDOWS_1252: [u32; 32] = [
        0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
    ];
    let code = match code {
        0 => 0xFFFD,
        0x80..=0x9F => WINDOWS_1252[(code - 0x80) as usize],
        _ => code,
    };
    char::from_u32(code).unwrap_or('\u{fffd}')
}

/// Decode the character references of `s` (`&amp;`, `&#233;`, `&#x2014;`
/// and the common named ones); unknown ones stay as written.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '#')
            .map_or(rest.len(), |e| e + 1);
        let name = &rest[1..end];
        let decoded = if let Some(number) = name.strip_prefix('#') {
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => number.parse().ok(),
            };
            code.map(numeric_reference)
        } else {
            named_entity(name)
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    // A NUL is never text (HTML drops it too); the model should not get one.
    if out.contains('\0') {
        out.retain(|c| c != '\0');
    }
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "shy" => '\u{ad}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "laquo" => '«',
        "raquo" => '»',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "bull" => '•',
        "middot" => '·',
        "deg" => '°',
        "times" => '×',
        "divide" => '÷',
        "plusmn" => '±',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "para" => '¶',
        "larr" => '←',
        "rarr" => '→',
        "uarr" => '↑',
        "darr" => '↓',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        "szlig" => 'ß',
        "ccedil" => 'ç',
        _ => return None,
    })
}

/// One tag: its lowercase name, whether it closes, and its attributes.
struct Tag<'a> {
    name: String,
    closing: bool,
    attributes: &'a str,
}

impl Tag<'_> {
    /// The value of attribute `wanted`, decoded.
    fn attribute(&self, wanted: &str) -> Option<String> {
        let mut rest = self.attributes;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
            if rest.is_empty() {
                return None;
            }
            let name_end = rest
                .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            rest = rest[name_end..].trim_start();
            let value = if let Some(after) = rest.strip_prefix('=') {
                let after = after.trim_start();
                let (value, next) = match after.chars().next() {
                    Some(q @ ('"' | '\'')) => {
                        let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                        (&after[1..close], after.get(close + 1..).unwrap_or(""))
                    }
                    _ => {
                        let end = after.find(char::is_whitespace).unwrap_or(after.len());
                        (&after[..end], &after[end..])
                    }
                };
                rest = next;
                value
            } else {
                ""
            };
            if name.eq_ignore_ascii_case(wanted) {
                return Some(decode_entities(value));
            }
        }
    }
}

/// Parse the tag at the start of `s` (which begins with `<`): the tag and
/// the bytes it spans, or `None` when it is not a tag.
fn parse_tag(s: &str) -> Option<(Tag<'_>, usize)> {
    let body = &s[1..];
    let (closing, body) = match body.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let name_len = body
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != ':')
        .unwrap_or(body.len());
    if name_len == 0 || !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    // The end of the tag: the first `>` outside quotes.
    let mut quote = None;
    let mut end = None;
    for (i, c) in body.char_indices().skip(name_len) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let consumed = 1 + usize::from(closing) + end + 1;
    Some((
        Tag {
            name: body[..name_len].to_ascii_lowercase(),
            closing,
            attributes: &body[name_len..end],
        },
        consumed,
    ))
}

/// Readable text from HTML: script, style and similar content dropped,
/// character references decoded, whitespace collapsed (kept in `<pre>`),
/// headings as `#` lines, list items as `- ` lines, blocks separated by
/// blank lines, table cells by ` | `, images by their alt text, and links
/// as `text (URL)` with URLs resolved against `base`.
pub fn html_to_text(html: &str, base: Option<&Url>) -> String {
    let mut out = TextOut {
        text: String::new(),
        space: false,
    };
    let mut pre = 0usize;
    // The open links: where their text starts and their target.
    let mut links: Vec<(usize, Option<String>)> = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let Some(at) = rest.find('<') else {
            out.text(&decode_entities(rest), pre > 0);
            break;
        };
        if at > 0 {
            out.text(&decode_entities(&rest[..at]), pre > 0);
            rest = &rest[at..];
        }
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |e| &comment[e + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |e| &rest[e + 1..]);
            continue;
        }
        let Some((tag, consumed)) = parse_tag(rest) else {
            out.text("<", pre > 0);
            rest = &rest[1..];
            continue;
        };
        rest = &rest[consumed..];
        let name = tag.name.as_str();
        if SKIPPED.contains(&name) {
            if !tag.closing && !tag.attributes.trim_end().ends_with('/') {
                // Skip to the matching end tag (case-insensitive).
                let closing = format!("</{name}");
                let lower = rest.to_ascii_lowercase();
                rest = match lower.find(&closing) {
                    Some(i) => rest[i..].find('>').map_or("", |e| &rest[i + e + 1..]),
                    None => "",
                };
            }
            continue;
        }
        match (name, tag.closing) {
            ("br", _) => out.newline(false),
            ("hr", _) => {
                out.newline(false);
                out.text.push_str("---");
                out.newline(false);
            }
            ("h1" | "h2" | "h3" | "h4" | "h5" | "h6", closing) => {
                out.newline(true);
                if !closing {
                    let level = usize::from(name.as_bytes()[1] - b'0');
                    out.word(&format!("{} ", "#".repeat(level)));
                }
            }
            ("li", false) => {
                out.newline(false);
                out.word("- ");
            }
            ("li" | "tr", true) | ("tr", false) => out.newline(false),
            ("pre", closing) => {
                out.newline(true);
                if closing {
                    pre = pre.saturating_sub(1);
                } else {
                    pre += 1;
                }
            }
            ("td" | "th", false) if !out.text.ends_with('\n') && !out.text.is_empty() => {
                out.text.push_str(" | ");
                out.space = false;
            }
            ("img", _) => {
                if let Some(alt) = tag.attribute("alt").filter(|a| !a.trim().is_empty()) {
                    out.space = true;
                    out.word(&format!("[image: {}]", alt.trim()));
                    out.space = true;
                }
            }
            ("a", false) => {
                let target = tag
                    .attribute("href")
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty() && !h.starts_with('#'))
                    .filter(|h| !h.to_ascii_lowercase().starts_with("javascript:"))
                    .map(|h| match base.and_then(|b| b.join(&h).ok()) {
                        Some(full) => full.to_string(),
                        None => h,
                    });
                links.push((out.text.len(), target));
            }
            ("a", true) => {
                if let Some((start, Some(target))) = links.pop() {
                    let shown = out.text.get(start..).unwrap_or("").trim();
                    if shown != target && !shown.is_empty() {
                        out.space = true;
                        out.word(&format!("({target})"));
                    }
                }
            }
            (block, _) if BLOCKS.contains(&block) => out.newline(true),
            _ => {}
        }
    }
    let text = out.text.replace('\u{a0}', " ");
    let mut result = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 || result.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        result.push_str(line);
        result.push('\n');
    }
    result.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = r#"<!DOCTYPE html><html><head><title>The  Page</title>
            <style>body { color: red }</style><script>alert("<p>x</p>")</script></head>
            <body><!-- hidden --><h1>Main &amp; Title</h1><p>First
            paragraph with <a href="/docs?a=1&amp;b=2">the docs</a> and
            <b>bold</b>&nbsp;text &#233;&#x2014;&lt;ok&gt;.</p>
            <ul><li>one</li><li>two</li></ul><pre>  keep
    this</pre><table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
            <img src="x.png" alt="A cat"><a href="javascript:void(0)">js</a>
            <SCRIPT type="x">hidden()</SCRIPT><p>5 < 6 &unknown; end</p></body></html>"#;
        let base = Url::parse("https://example.com/dir/page").unwrap();
        let text = html_to_text(html, Some(&base));
        assert_eq!(
            text,
            "The Page\n\n# Main & Title\n\nFirst paragraph with the docs \
             (https://example.com/docs?a=1&b=2) and bold text é—<ok>.\n\n- one\n- two\n\n  \
             keep\n    this\n\na | b\n1 | 2\n\n[image: A cat] js\n\n5 < 6 &unknown; end"
        );
    }

    #[test]
    fn entities_and_attributes_decode() {
        assert_eq!(
            decode_entities("a &amp;&amp b &#65;&#x42; &zz; &"),
            "a && b AB &zz; &"
        );
        assert_eq!(
            decode_entities("&#0;x\0y &#150; &#x110000; &#xD800; &#128;"),
            "\u{fffd}xy \u{2013} \u{fffd} \u{fffd} \u{20ac}"
        );
        let (tag, consumed) = parse_tag(r#"<A HREF='x>y' title="t">rest"#).unwrap();
        assert_eq!(tag.name, "a");
        assert_eq!(tag.attribute("href").as_deref(), Some("x>y"));
        assert_eq!(tag.attribute("title").as_deref(), Some("t"));
        assert_eq!(consumed, 24);
        assert!(parse_tag("< not a tag").is_none());
    }
}

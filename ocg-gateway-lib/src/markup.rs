//! The agent's Markdown as the HTML that Telegram and Matrix take, and long
//! text split into messages.
//!
//! Telegram's HTML mode knows `<b>`, `<i>`, `<s>`, `<u>`, `<code>`, `<pre>`,
//! `<a>` and `<blockquote>` and rejects anything unbalanced, so the converter only ever
//! emits balanced tags and escapes everything else. A marker without its
//! closing partner stays literal text. Inline spans do not cross lines,
//! which keeps a stray `*` from swallowing the rest of a reply.

/// Room kept free in each piece for a code fence closed at its end and
/// reopened at the start of the next one.
const FENCE_RESERVE: usize = 32;

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// The longest prefix of `text` (in bytes, on a char boundary) that fits in
/// `limit` UTF-16 units.
fn fitting_prefix(text: &str, limit: usize) -> usize {
    let mut units = 0;
    for (index, c) in text.char_indices() {
        units += c.len_utf16();
        if units > limit {
            return index;
        }
    }
    text.len()
}

/// Where to cut `window` (a prefix of the remaining text): after the last
/// paragraph break, else line break, else space, when that keeps at least
/// half of the window; else at the window's end. Returns (end of the piece,
/// start of the rest).
fn cut_point(window: &str) -> (usize, usize) {
    let half = window.len() / 2;
    for separator in ["\n\n", "\n", " "] {
        if let Some(at) = window.rfind(separator).filter(|at| *at >= half && *at > 0) {
            return (at, at + separator.len());
        }
    }
    (window.len(), window.len())
}

/// The language of a fence line (` ```rust ` → `rust`), `None` when `line`
/// is not a fence.
fn fence(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    (line.len() - trimmed.len() <= 3)
        .then_some(trimmed)?
        .strip_prefix("```")
        .map(str::trim)
}

/// Split `text` into pieces of at most `limit` UTF-16 units, on paragraph,
/// line or word boundaries where possible and always on character
/// boundaries. A code block cut in two is closed at the end of one piece
/// and reopened (same language) at the start of the next.
pub(crate) fn split(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(FENCE_RESERVE * 2);
    let mut pieces = Vec::new();
    let mut rest = text.trim_end().to_owned();
    while utf16_len(&rest) > limit {
        let window = &rest[..fitting_prefix(&rest, limit - FENCE_RESERVE)];
        let (end, next) = cut_point(window);
        let mut piece = rest[..end].trim_end().to_owned();
        let mut remainder = rest[next..].trim_start_matches('\n').to_owned();
        let mut open: Option<String> = None;
        for line in piece.lines() {
            if let Some(language) = fence(line) {
                open = match open {
                    Some(_) => None,
                    None => Some(language.chars().take(16).collect()),
                };
            }
        }
        if let Some(language) = open {
            piece.push_str("\n```");
            remainder = format!("```{language}\n{remainder}");
        }
        if !piece.trim().is_empty() {
            pieces.push(piece);
        }
        rest = remainder;
    }
    if !rest.trim().is_empty() {
        pieces.push(rest);
    }
    pieces
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Telegram HTML for the agent's Markdown.
pub(crate) fn markdown_to_html(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + 64);
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    let mut first = true;
    let mut newline = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push('\n');
        }
    };
    while i < lines.len() {
        let line = lines[i];
        if let Some(language) = fence(line) {
            let body_start = i + 1;
            let mut end = body_start;
            while end < lines.len() && fence(lines[end]).is_none() {
                end += 1;
            }
            newline(&mut out);
            let language: String = language
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '#'))
                .collect();
            if language.is_empty() {
                out.push_str("<pre>");
            } else {
                out.push_str("<pre><code class=\"language-");
                out.push_str(&language);
                out.push_str("\">");
            }
            escape(&lines[body_start..end].join("\n"), &mut out);
            out.push_str(if language.is_empty() {
                "</pre>"
            } else {
                "</code></pre>"
            });
            i = end + 1;
            continue;
        }
        if line.trim_start().starts_with('>') {
            let mut quoted = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                let inner = lines[i].trim_start()[1..].strip_prefix(' ');
                quoted.push(inner.unwrap_or(&lines[i].trim_start()[1..]));
                i += 1;
            }
            newline(&mut out);
            out.push_str("<blockquote>");
            for (n, q) in quoted.iter().enumerate() {
                if n > 0 {
                    out.push('\n');
                }
                inline(q, &mut out);
            }
            out.push_str("</blockquote>");
            continue;
        }
        newline(&mut out);
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            out.push_str("<b>");
            inline(trimmed[hashes..].trim(), &mut out);
            out.push_str("</b>");
        } else if matches!(trimmed, "---" | "***" | "___") {
            out.push_str("──────");
        } else if let Some(item) = ["- ", "* ", "+ "]
            .iter()
            .find_map(|bullet| trimmed.strip_prefix(bullet))
        {
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push_str("• ");
            inline(item, &mut out);
        } else {
            inline(line, &mut out);
        }
        i += 1;
    }
    out
}

/// Newlines of converted Markdown as `<br>` outside `<pre>` blocks (Matrix
/// clients and mail readers render HTML, where a bare newline is a
/// space).
pub(crate) fn html_line_breaks(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html;
    while !rest.is_empty() {
        let (plain, pre) = match rest.find("<pre") {
            Some(start) => {
                let end = rest[start..]
                    .find("</pre>")
                    .map_or(rest.len(), |e| start + e + "</pre>".len());
                (&rest[..start], &rest[start..end])
            }
            None => (rest, ""),
        };
        out.push_str(&plain.replace('\n', "<br>"));
        out.push_str(pre);
        rest = &rest[plain.len() + pre.len()..];
    }
    out
}

/// Slack's mrkdwn for the agent's Markdown, by way of the HTML above: its
/// tags are balanced and its text escaped exactly as Slack wants (`&amp;`,
/// `&lt;`, `&gt;`), so each tag only has to become its marker.
pub(crate) fn markdown_to_mrkdwn(markdown: &str) -> String {
    let html = markdown_to_html(markdown);
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    let mut in_pre = false;
    let mut quote_start = None;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open].replace("&quot;", "\""));
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            rest = &rest[open..];
            break;
        };
        let tag = &rest[open + 1..close];
        match tag {
            "b" | "/b" => out.push('*'),
            "i" | "/i" => out.push('_'),
            "s" | "/s" => out.push('~'),
            "code" | "/code" if !in_pre => out.push('`'),
            "/code" => {}
            _ if tag.starts_with("code ") => {}
            "pre" => {
                in_pre = true;
                out.push_str("```\n");
            }
            "/pre" => {
                in_pre = false;
                out.push_str("\n```");
            }
            "blockquote" => quote_start = Some(out.len()),
            "/blockquote" => {
                if let Some(start) = quote_start.take() {
                    let quoted: String = out[start..]
                        .lines()
                        .map(|line| format!("> {line}"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    out.truncate(start);
                    out.push_str(&quoted);
                }
            }
            "/a" => out.push('>'),
            _ => {
                if let Some(url) = tag
                    .strip_prefix("a href=\"")
                    .and_then(|t| t.strip_suffix('"'))
                {
                    out.push('<');
                    // `|` would end the link's address in mrkdwn.
                    out.push_str(&url.replace("&quot;", "%22").replace('|', "%7C"));
                    out.push('|');
                }
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(&rest.replace("&quot;", "\""));
    out
}

/// The position (in `chars`) of `marker` closing a span opened just before
/// `from`, with a non-empty, non-space-padded inside.
fn closing(chars: &[char], from: usize, marker: &[char]) -> Option<usize> {
    if chars.get(from).is_none_or(|c| c.is_whitespace()) {
        return None;
    }
    let mut at = from + 1;
    while at + marker.len() <= chars.len() {
        if chars[at..at + marker.len()] == *marker
            && !chars[at - 1].is_whitespace()
            && (marker[0] != '_'
                || chars
                    .get(at + marker.len())
                    .is_none_or(|c| !c.is_alphanumeric()))
        {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn inline(text: &str, out: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    let collect = |range: std::ops::Range<usize>| chars[range].iter().collect::<String>();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\\' && next.is_some_and(|n| n.is_ascii_punctuation()) {
            escape(&next.unwrap_or_default().to_string(), out);
            i += 2;
            continue;
        }
        if c == '`'
            && let Some(end) = chars[i + 1..].iter().position(|c| *c == '`')
            && end > 0
        {
            out.push_str("<code>");
            escape(&collect(i + 1..i + 1 + end), out);
            out.push_str("</code>");
            i += end + 2;
            continue;
        }
        let double = next == Some(c) && matches!(c, '*' | '_' | '~');
        if double {
            let marker = [c, c];
            if let Some(end) = closing(&chars, i + 2, &marker) {
                let tag = match c {
                    '~' => "s",
                    _ => "b",
                };
                out.push_str(&format!("<{tag}>"));
                inline(&collect(i + 2..end), out);
                out.push_str(&format!("</{tag}>"));
                i = end + 2;
                continue;
            }
        }
        let word_start = i == 0 || !chars[i - 1].is_alphanumeric();
        if !double
            && (c == '*' || (c == '_' && word_start))
            && let Some(end) = closing(&chars, i + 1, &[c])
        {
            out.push_str("<i>");
            inline(&collect(i + 1..end), out);
            out.push_str("</i>");
            i = end + 1;
            continue;
        }
        if c == '['
            && let Some(link) = link(&chars, i)
        {
            out.push_str("<a href=\"");
            escape(&link.url, out);
            out.push_str("\">");
            inline(&link.text, out);
            out.push_str("</a>");
            i = link.end;
            continue;
        }
        escape(&c.to_string(), out);
        i += 1;
        if double {
            // A lone `**`, `__` or `~~` stays literal as a pair.
            escape(&c.to_string(), out);
            i += 1;
        }
    }
}

struct Link {
    text: String,
    url: String,
    end: usize,
}

/// `[text](url)` starting at `start`, for web, mail and `tg://` links only.
fn link(chars: &[char], start: usize) -> Option<Link> {
    let close = start + 1 + chars[start + 1..].iter().position(|c| *c == ']')?;
    if chars.get(close + 1) != Some(&'(') || close == start + 1 {
        return None;
    }
    let url_start = close + 2;
    let url_end = url_start + chars[url_start..].iter().position(|c| *c == ')')?;
    let url: String = chars[url_start..url_end].iter().collect();
    let allowed = ["http://", "https://", "mailto:", "tg://"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    (allowed && !url.contains(char::is_whitespace)).then(|| Link {
        text: chars[start + 1..close].iter().collect(),
        url,
        end: url_end + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_slack_mrkdwn() {
        assert_eq!(
            markdown_to_mrkdwn("# Title\n**bold** and *it* and ~~gone~~, `a<b`"),
            "*Title*\n*bold* and _it_ and ~gone~, `a&lt;b`"
        );
        assert_eq!(
            markdown_to_mrkdwn("see [the docs](https://x.example/?a=1&b=2) \"now\""),
            "see <https://x.example/?a=1&amp;b=2|the docs> \"now\""
        );
        assert_eq!(
            markdown_to_mrkdwn("```rust\nlet x = a && b;\n```"),
            "```\nlet x = a &amp;&amp; b;\n```"
        );
        assert_eq!(markdown_to_mrkdwn("> one\n> two"), "> one\n> two");
        assert_eq!(
            markdown_to_mrkdwn("[x](https://a.example/?q=a|b)"),
            "<https://a.example/?q=a%7Cb|x>"
        );
        assert_eq!(
            markdown_to_mrkdwn("<@U123> & <!channel>"),
            "&lt;@U123&gt; &amp; &lt;!channel&gt;"
        );
    }

    #[test]
    fn inline_markdown_becomes_balanced_html() {
        assert_eq!(
            markdown_to_html("**bold** and *it* and `a<b` and ~~gone~~"),
            "<b>bold</b> and <i>it</i> and <code>a&lt;b</code> and <s>gone</s>"
        );
        assert_eq!(
            markdown_to_html("see [the docs](https://x.example/a?b=1&c=2)"),
            "see <a href=\"https://x.example/a?b=1&amp;c=2\">the docs</a>"
        );
        assert_eq!(
            markdown_to_html("[bad](javascript:alert(1))"),
            "[bad](javascript:alert(1))"
        );
    }

    #[test]
    fn unmatched_markers_and_snake_case_stay_literal() {
        assert_eq!(markdown_to_html("2 * 3 = 6"), "2 * 3 = 6");
        assert_eq!(markdown_to_html("snake_case_name"), "snake_case_name");
        assert_eq!(markdown_to_html("**open"), "**open");
        assert_eq!(
            markdown_to_html("a < b && c > d"),
            "a &lt; b &amp;&amp; c &gt; d"
        );
        assert_eq!(markdown_to_html(r"\*not italic\*"), "*not italic*");
    }

    #[test]
    fn blocks_headings_quotes_and_lists() {
        let html = markdown_to_html(
            "# Title\n\n```rust\nfn main() { a < b }\n```\n> quoted *x*\n> more\n- item **b**",
        );
        assert_eq!(
            html,
            "<b>Title</b>\n\n<pre><code class=\"language-rust\">fn main() { a &lt; b }</code></pre>\n\
             <blockquote>quoted <i>x</i>\nmore</blockquote>\n• item <b>b</b>"
        );
        // An unclosed fence runs to the end and is still closed in HTML.
        assert_eq!(markdown_to_html("```\nx"), "<pre>x</pre>");
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split("hello\n\n", 4096), vec!["hello".to_string()]);
        assert!(split("   \n", 4096).is_empty());
    }

    #[test]
    fn long_text_splits_on_paragraphs_then_lines_then_words() {
        let paragraph = "word ".repeat(150).trim_end().to_owned(); // 749 chars
        let text = vec![paragraph.clone(); 12].join("\n\n");
        let pieces = split(&text, 4096);
        assert!(pieces.len() >= 2);
        for piece in &pieces {
            assert!(utf16_len(piece) <= 4096);
            assert!(
                piece.starts_with("word") && piece.ends_with("word"),
                "{piece:?}"
            );
        }
        let joined = pieces.join(" ");
        assert_eq!(
            joined.split_whitespace().count(),
            text.split_whitespace().count(),
            "nothing lost"
        );

        let one_line = "x".repeat(10_000);
        let pieces = split(&one_line, 4096);
        assert_eq!(pieces.concat(), one_line);
        assert!(pieces.iter().all(|p| p.len() <= 4096));
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries_and_counted_in_utf16() {
        // Emoji are two UTF-16 units each: 3000 of them is 6000 units.
        let emoji = "😀".repeat(3000);
        let pieces = split(&emoji, 4096);
        assert!(pieces.len() >= 2);
        assert!(pieces.iter().all(|p| utf16_len(p) <= 4096));
        assert_eq!(pieces.concat(), emoji);
        let cyrillic = "привет мир ".repeat(900);
        let pieces = split(&cyrillic, 4096);
        assert!(pieces.iter().all(|p| utf16_len(p) <= 4096));
        assert_eq!(
            pieces.join(" ").split_whitespace().collect::<Vec<_>>(),
            cyrillic.split_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code = (0..400)
            .map(|n| format!("let x{n} = {n};"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("Here:\n```rust\n{code}\n```\nDone.");
        let pieces = split(&text, 4096);
        assert!(pieces.len() >= 2);
        assert!(pieces[0].ends_with("\n```"));
        assert!(pieces[1].starts_with("```rust\n"));
        for piece in &pieces {
            let html = markdown_to_html(piece);
            assert_eq!(
                html.matches("<pre>").count(),
                html.matches("</pre>").count()
            );
        }
    }
}

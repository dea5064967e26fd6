//! `web_fetch`: GET a URL and hand the model readable text, without
//! letting it reach the machine's own network.
//!
//! Server-side request forgery is refused after DNS resolution: the host is
//! resolved once, every address is vetted ([`is_public_address`]), and the
//! connection is pinned to exactly those addresses, so a second lookup
//! (DNS rebinding) cannot swap in a private one. Redirects are followed by
//! hand, up to [`MAX_REDIRECTS`], each hop vetted the same way. A proxy from
//! the environment is never used (it would do its own resolving).
//!
//! The body is streamed and cut at a byte cap; only textual content types
//! are accepted; HTML is turned into text by [`html_to_text`], a small
//! converter (a full HTML5 parser such as `html5ever` is more than this
//! needs: the model wants the words, headings and links).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Tool, ToolContext, ToolGroup, ToolPolicy, arguments};
use crate::AgentError;

/// The most body bytes read, and the default.
pub const WEB_MAX_BYTES: usize = 2 * 1024 * 1024;

/// The time one fetch may take, redirects included.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(20);

/// Redirects followed.
pub const MAX_REDIRECTS: usize = 5;

/// Whether `ip` is an ordinary public address: not loopback, private,
/// link-local (which holds the cloud metadata address 169.254.169.254),
/// carrier-grade NAT, unspecified, multicast, broadcast, reserved,
/// documentation or benchmarking space, nor an IPv6 unique-local or
/// site-local address. IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that address; Teredo is refused.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0                                    // "this network"
        || a == 10                                          // private
        || (a == 100 && (64..128).contains(&b))             // carrier-grade NAT
        || a == 127                                         // loopback
        || (a == 169 && b == 254)                           // link-local, metadata
        || (a == 172 && (16..32).contains(&b))              // private
        || (a == 192 && b == 0 && c == 0)                   // IETF assignments
        || (a == 192 && b == 0 && c == 2)                   // documentation
        || (a == 192 && b == 168)                           // private
        || (a == 198 && (b == 18 || b == 19))               // benchmarking
        || (a == 198 && b == 51 && c == 100)                // documentation
        || (a == 203 && b == 0 && c == 113)                 // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        // ::, ::1 and the deprecated IPv4-compatible form.
        return is_public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    let refused = (s[0] == 0x64 && s[1] == 0xff9b)          // local-use NAT64
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])          // discard
        || (s[0] == 0x2001 && s[1] == 0)                    // Teredo
        || (s[0] == 0x2001 && s[1] == 0xdb8)                // documentation
        || (s[0] & 0xfe00) == 0xfc00                        // unique local, fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80                        // link-local
        || (s[0] & 0xffc0) == 0xfec0                        // site-local
        || (s[0] & 0xff00) == 0xff00; // multicast
    !refused
}

/// A URL's host: an address, or a name to resolve.
enum Host<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

fn host(url: &Url) -> Option<Host<'_>> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Domain(host),
    })
}

/// The `web_fetch` tool.
#[derive(Debug, Clone)]
pub struct WebFetchTool {
    allow_private: bool,
    /// Decides which addresses are reachable when private ones are not.
    filter: fn(IpAddr) -> bool,
    timeout: Duration,
}

impl WebFetchTool {
    /// `web_fetch` under `policy` (its `web_allow_private`).
    pub fn new(policy: &ToolPolicy) -> Self {
        WebFetchTool {
            allow_private: policy.web_allow_private,
            filter: is_public_address,
            timeout: WEB_TIMEOUT,
        }
    }

    /// The same tool with another time limit for a whole fetch.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow_private || (self.filter)(ip)
    }

    /// Check `url` and resolve its host to vetted addresses.
    async fn vet(&self, url: &Url) -> Result<Vec<SocketAddr>, AgentError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AgentError::tool(
                "unsupported_scheme",
                format!("{url}: only http and https URLs can be fetched"),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AgentError::tool(
                "credentials_in_url",
                "URLs with a user name or password are refused",
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match host(url) {
            None => {
                return Err(AgentError::tool("invalid_url", format!("{url}: no host")));
            }
            Some(Host::Ip(ip)) => vec![SocketAddr::new(ip, port)],
            Some(Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|error| AgentError::tool("dns_failed", format!("{domain}: {error}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(AgentError::tool(
                "dns_failed",
                format!("{url}: the host has no address"),
            ));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip())) {
            tracing::info!(%url, address = %bad.ip(), "web_fetch refused a private address");
            return Err(AgentError::tool(
                "address_not_allowed",
                format!(
                    "{}: resolves to {}, a loopback, private, link-local or otherwise \
                     non-public address, which web_fetch does not reach",
                    url.host_str().unwrap_or_default(),
                    bad.ip()
                ),
            ));
        }
        Ok(addrs)
    }

    async fn fetch(&self, start: Url, max_bytes: usize) -> Result<String, AgentError> {
        let mut url = start;
        let mut hops = 0;
        let deadline = Instant::now() + self.timeout;
        let timed_out = || {
            AgentError::tool(
                "timed_out",
                format!("the fetch took longer than {} s", self.timeout.as_secs()),
            )
        };
        let response = loop {
            let addrs = tokio::time::timeout_at(deadline, self.vet(&url))
                .await
                .map_err(|_| timed_out())??;
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(deadline.saturating_duration_since(Instant::now()))
                .user_agent(concat!("ocg-web-fetch/", env!("CARGO_PKG_VERSION")));
            if let Some(Host::Domain(domain)) = host(&url) {
                builder = builder.resolve_to_addrs(domain, &addrs);
            }
            let client = builder
                .build()
                .map_err(|error| AgentError::Internal(format!("HTTP client: {error}")))?;
            let response = tokio::time::timeout_at(deadline, client.get(url.clone()).send())
                .await
                .map_err(|_| timed_out())?
                .map_err(|error| {
                    let code = if error.is_timeout() {
                        "timed_out"
                    } else {
                        "fetch_failed"
                    };
                    AgentError::tool(code, format!("{url}: {error}"))
                })?;
            if !response.status().is_redirection() {
                break response;
            }
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                break response;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(AgentError::tool(
                    "too_many_redirects",
                    format!("more than {MAX_REDIRECTS} redirects, the last to {location}"),
                ));
            }
            let next = url.join(location).map_err(|error| {
                AgentError::tool(
                    "invalid_url",
                    format!("{url} redirects to {location:?}: {error}"),
                )
            })?;
            tracing::debug!(from = %url, to = %next, "web_fetch redirect");
            url = next;
        };

        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let textual = mime.is_empty()
            || mime.starts_with("text/")
            || mime.ends_with("+json")
            || mime.ends_with("+xml")
            || matches!(
                mime.as_str(),
                "application/json"
                    | "application/xml"
                    | "application/javascript"
                    | "application/x-javascript"
                    | "application/ecmascript"
                    | "application/x-ndjson"
            );
        if !textual {
            return Err(AgentError::tool(
                "unsupported_content_type",
                format!("{url}: {mime} is not text; web_fetch reads text, HTML, JSON and XML"),
            ));
        }

        let mut body = Vec::new();
        let mut truncated = false;
        let mut stream = response.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(timed_out()),
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Err(AgentError::tool(
                        "fetch_failed",
                        format!("{url}: reading the body: {error}"),
                    ));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let room = max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }

        let text = decode(&body, &content_type);
        let html = mime.contains("html")
            || (mime.is_empty()
                && text.trim_start().get(..15).is_some_and(|head| {
                    let head = head.to_ascii_lowercase();
                    head.starts_with("<!doctype html") || head.starts_with("<html")
                }));
        let text = if html {
            html_to_text(&text, Some(&url))
        } else {
            text
        };
        let mut report = format!(
            "URL: {url}\nstatus: {status}\ncontent-type: {}\n",
            if mime.is_empty() { "(none)" } else { &mime }
        );
        if truncated {
            report.push_str(&format!("[the body was cut at {max_bytes} bytes]\n"));
        }
        report.push('\n');
        report.push_str(&text);
        Ok(report)
    }
}

/// The body as text: UTF-8, or Latin-1 when the header says so.
fn decode(body: &[u8], content_type: &str) -> String {
    let charset = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .map(|c| c.trim_matches('"'));
    match charset {
        Some("iso-8859-1" | "latin1" | "windows-1252" | "us-ascii") => {
            body.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchArguments {
    url: String,
    max_bytes: Option<usize>,
}

#[async_trait]
impl Tool for WebFetchTool {
    fn name(&self) -> &'static str {
        "web_fetch"
    }

    fn group(&self) -> ToolGroup {
        ToolGroup::Web
    }

    fn description(&self) -> &'static str {
        "Fetch a web page or text resource with GET and return it as readable text \
         (HTML is converted: scripts and styles dropped, headings, lists and links kept). \
         Only http(s) URLs on the public internet; text, HTML, JSON and XML only."
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The http:// or https:// URL."},
                "max_bytes": {
                    "type": "integer", "minimum": 1, "maximum": WEB_MAX_BYTES,
                    "description": "Bytes of the body to read at most (default and maximum 2 MiB)."
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(
        &self,
        _context: &ToolContext,
        arguments_value: serde_json::Value,
    ) -> Result<String, AgentError> {
        let args: FetchArguments = arguments("web_fetch", arguments_value)?;
        let url = Url::parse(args.url.trim())
            .map_err(|error| AgentError::tool("invalid_url", format!("{:?}: {error}", args.url)))?;
        let max_bytes = args
            .max_bytes
            .unwrap_or(WEB_MAX_BYTES)
            .clamp(1, WEB_MAX_BYTES);
        self.fetch(url, max_bytes).await
    }
}

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
    use std::str::FromStr;

    fn public(ip: &str) -> bool {
        is_public_address(IpAddr::from_str(ip).unwrap())
    }

    #[test]
    fn the_classifier_refuses_every_internal_range() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!public(ip), "{ip} should be refused");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.167.1.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(public(ip), "{ip} should be allowed");
        }
    }

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

    async fn fetch(tool: &WebFetchTool, url: &str) -> Result<String, AgentError> {
        tool.call(&ToolContext::default(), serde_json::json!({"url": url}))
            .await
    }

    #[tokio::test]
    async fn private_addresses_are_refused_before_connecting() {
        let tool = WebFetchTool::new(&ToolPolicy::default());
        // A listener that would notice a connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://[::1]/".to_owned(),
            "http://[::ffff:127.0.0.1]/".to_owned(),
            "http://[fd00:ec2::254]/".to_owned(),
            "http://10.1.2.3/".to_owned(),
            "http://0x7f000001/".to_owned(),
            "http://2130706433/".to_owned(),
            "http://0/".to_owned(),
        ] {
            let error = fetch(&tool, &url).await.unwrap_err();
            assert_eq!(error.code(), "address_not_allowed", "{url}: {error}");
        }
        assert!(listener.accept().is_err(), "a refused fetch connected");
        let code = |r: Result<String, AgentError>| r.unwrap_err().code();
        assert_eq!(
            code(fetch(&tool, "file:///etc/passwd").await),
            "unsupported_scheme"
        );
        assert_eq!(
            code(fetch(&tool, "ftp://example.com/").await),
            "unsupported_scheme"
        );
        assert_eq!(
            code(fetch(&tool, "http://user:pw@example.com/").await),
            "credentials_in_url"
        );
        assert_eq!(code(fetch(&tool, "not a url").await), "invalid_url");
    }

    /// A local server with a few routes; returns its base URL.
    async fn serve() -> String {
        use axum::http::header;
        use axum::response::{IntoResponse, Redirect};
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/page",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        "<html><body><h2>Hello</h2><p>from <a href='/other'>here</a></p>\
                         <script>secret()</script></body></html>",
                    )
                }),
            )
            .route(
                "/json",
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"a":1}"#) }),
            )
            .route(
                "/binary",
                get(|| async {
                    ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 10]).into_response()
                }),
            )
            .route(
                "/big",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "x".repeat(100_000)) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/hop", get(|| async { Redirect::temporary("/page") }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route(
                "/metadata",
                get(|| async { Redirect::temporary("http://169.254.169.254/latest/") }),
            )
            .route(
                "/elsewhere",
                get(|| async { Redirect::temporary("http://127.0.0.2:9/") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn fetches_converts_and_caps_when_private_is_allowed() {
        let base = serve().await;
        let tool = WebFetchTool::new(&ToolPolicy {
            web_allow_private: true,
            ..ToolPolicy::default()
        })
        .with_timeout(Duration::from_secs(2));
        let page = fetch(&tool, &format!("{base}/page")).await.unwrap();
        assert!(
            page.starts_with(&format!("URL: {base}/page\nstatus: 200 OK\n")),
            "{page}"
        );
        assert!(page.contains("content-type: text/html\n"), "{page}");
        assert!(
            page.ends_with(&format!("## Hello\n\nfrom here ({base}/other)")),
            "{page}"
        );
        assert!(!page.contains("secret"));

        let hop = fetch(&tool, &format!("{base}/hop")).await.unwrap();
        assert!(hop.starts_with(&format!("URL: {base}/page\n")), "{hop}");
        let json = fetch(&tool, &format!("{base}/json")).await.unwrap();
        assert!(json.ends_with("\n\n{\"a\":1}"), "{json}");

        let code = |r: Result<String, AgentError>| r.unwrap_err().code();
        assert_eq!(
            code(fetch(&tool, &format!("{base}/binary")).await),
            "unsupported_content_type"
        );
        assert_eq!(
            code(fetch(&tool, &format!("{base}/loop")).await),
            "too_many_redirects"
        );
        let started = std::time::Instant::now();
        assert_eq!(
            code(fetch(&tool, &format!("{base}/slow")).await),
            "timed_out"
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        let big = tool
            .call(
                &ToolContext::default(),
                serde_json::json!({"url": format!("{base}/big"), "max_bytes": 1000}),
            )
            .await
            .unwrap();
        assert!(big.contains("[the body was cut at 1000 bytes]"), "{big}");
        assert!(big.ends_with(&format!("\n\n{}", "x".repeat(1000))));
    }

    #[tokio::test]
    async fn every_redirect_hop_is_vetted() {
        let base = serve().await;
        // Only the test server's address is reachable: every other
        // loopback or private address stays refused.
        let mut tool = WebFetchTool::new(&ToolPolicy::default());
        tool.filter = |ip| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || is_public_address(ip);
        assert!(fetch(&tool, &format!("{base}/page")).await.is_ok());
        for path in ["metadata", "elsewhere"] {
            let error = fetch(&tool, &format!("{base}/{path}")).await.unwrap_err();
            assert_eq!(error.code(), "address_not_allowed", "{path}: {error}");
        }
    }
}

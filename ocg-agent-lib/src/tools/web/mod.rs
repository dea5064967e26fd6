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
//! are accepted; HTML is turned into text by [`html_to_text`]. The address
//! checks are in `address.rs`, the HTML converter in `html.rs`.

use std::net::{IpAddr, SocketAddr};
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

mod address;
mod html;

pub use address::is_public_address;
pub use html::html_to_text;

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

    /// The tool's address rules alone, for POSTing webhooks: private
    /// addresses refused unless `allow_private`.
    pub fn with_private(allow_private: bool) -> Self {
        WebFetchTool {
            allow_private,
            filter: is_public_address,
            timeout: WEB_TIMEOUT,
        }
    }

    /// POST `body` as JSON to `url` with `Idempotency-Key: key`, vetted like
    /// a fetch (one vetted resolution, pinned; no redirects followed, no
    /// proxy). A 2xx is success; a refused address, a 4xx or a timeout (it
    /// may have arrived) is final; a failed lookup or connection, a 429 or a
    /// 5xx is worth a retry.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        key: &str,
    ) -> Result<(), crate::schedule::WebhookError> {
        use crate::schedule::WebhookError::{Failed, Retry};
        let url = Url::parse(url.trim()).map_err(|e| Failed(format!("{url:?}: {e}")))?;
        let addrs = match self.vet(&url).await {
            Ok(addrs) => addrs,
            Err(AgentError::Tool {
                code: "dns_failed",
                message,
            }) => return Err(Retry(message)),
            Err(error) => return Err(Failed(error.to_string())),
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .user_agent(concat!("ocg-scheduler/", env!("CARGO_PKG_VERSION")));
        if let Some(Host::Domain(domain)) = host(&url) {
            builder = builder.resolve_to_addrs(domain, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| Failed(format!("HTTP client: {e}")))?;
        let response = client
            .post(url.clone())
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    Retry(format!("{url}: {e}"))
                } else {
                    Failed(format!("{url}: {e} (not repeated: it may have arrived)"))
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(Retry(format!("{url} answered {status}")))
        } else {
            Err(Failed(format!("{url} answered {status}")))
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

#[cfg(test)]
mod tests;

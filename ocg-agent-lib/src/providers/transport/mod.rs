//! HTTP and SSE plumbing shared by the providers: the stream driver over
//! the crate's one SSE decoder ([`crate::sse`]), endpoints and headers, and
//! the classification of HTTP failures into [`ProviderError`]s. A new
//! provider is a folder next to `openai/` and `anthropic/` that implements
//! [`EventParser`] for its stream and calls [`event_stream`].

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{ProviderError, ProviderEvent, ProviderStream, ToolSpec};
use crate::sse::SseDecoder;
pub(in crate::providers) use crate::sse::SseEvent;

/// One item of a [`ProviderStream`].
pub(in crate::providers) type Item = Result<ProviderEvent, ProviderError>;

/// The most of an error body read to find the vendor's message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// A vendor's stream protocol over SSE events.
///
/// The driver stops after the first `Done` or `Err` item a parser
/// pushes, so a parser need not track whether it has finished.
pub(in crate::providers) trait EventParser: Send + 'static {
    /// Handle one event, pushing the items it produces.
    fn on_event(&mut self, event: SseEvent, out: &mut VecDeque<Item>);
    /// The body ended before a terminal item: push `Done` (when the
    /// answer is complete after all) or a protocol error.
    fn on_end(&mut self, out: &mut VecDeque<Item>);
}

struct Driver<B, P> {
    body: B,
    decoder: SseDecoder,
    parser: P,
    pending: VecDeque<Item>,
    provider: String,
    body_done: bool,
    finished: bool,
}

/// Run `parser` over the SSE body of `response`. The stream ends after
/// the first `Done` or error; dropping it drops the connection.
fn event_stream<P: EventParser>(
    response: reqwest::Response,
    provider: String,
    parser: P,
) -> ProviderStream {
    drive(Box::pin(response.bytes_stream()), provider, parser)
}

/// [`Endpoint::stream`]'s driver over a body given as chunks, for the fuzz targets.
#[cfg(fuzzing)]
pub(in crate::providers) fn chunk_stream<P: EventParser>(
    chunks: Vec<Vec<u8>>,
    provider: String,
    parser: P,
) -> ProviderStream {
    let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, reqwest::Error>));
    drive(body, provider, parser)
}

fn drive<B, C, P>(body: B, provider: String, parser: P) -> ProviderStream
where
    B: Stream<Item = Result<C, reqwest::Error>> + Unpin + Send + 'static,
    C: AsRef<[u8]>,
    P: EventParser,
{
    let driver = Driver {
        body,
        decoder: SseDecoder::default(),
        parser,
        pending: VecDeque::new(),
        provider,
        body_done: false,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(driver, |mut d| async move {
        loop {
            if d.finished {
                return None;
            }
            if let Some(item) = d.pending.pop_front() {
                if matches!(item, Err(_) | Ok(ProviderEvent::Done { .. })) {
                    d.finished = true;
                    d.pending.clear();
                }
                return Some((item, d));
            }
            if d.body_done {
                return None;
            }
            match d.body.next().await {
                Some(Ok(bytes)) => match d.decoder.feed(bytes.as_ref()) {
                    Ok(events) => {
                        for event in events {
                            d.parser.on_event(event, &mut d.pending);
                        }
                    }
                    Err(message) => d.pending.push_back(Err(ProviderError::Protocol {
                        provider: d.provider.clone(),
                        message,
                    })),
                },
                Some(Err(error)) => {
                    d.body_done = true;
                    d.pending.push_back(Err(body_error(&d.provider, &error)));
                }
                None => {
                    d.body_done = true;
                    for event in d.decoder.finish() {
                        d.parser.on_event(event, &mut d.pending);
                    }
                    if !d
                        .pending
                        .iter()
                        .any(|item| matches!(item, Err(_) | Ok(ProviderEvent::Done { .. })))
                    {
                        d.parser.on_end(&mut d.pending);
                    }
                }
            }
        }
    }))
}

/// A vendor's streaming endpoint: where requests go, the HTTP client with
/// the vendor's headers (the key marked sensitive), and the key itself, kept
/// only to scrub it from the vendor's error messages. `Debug` shows neither.
pub(in crate::providers) struct Endpoint {
    /// The provider's name, for logs and errors.
    pub(in crate::providers) name: String,
    /// The model used when a request names none.
    pub(in crate::providers) model: String,
    url: reqwest::Url,
    client: reqwest::Client,
    secret: Option<String>,
    tools: ToolsJson,
}

/// The tool list in a vendor's wire form, serialized once per list: the
/// runtime offers the same shared list ([`ToolSpec`]s behind one `Arc`) on
/// every turn, so the JSON schemas are not walked and re-encoded each time.
#[derive(Default)]
struct ToolsJson {
    last: std::sync::Mutex<Option<RenderedTools>>,
}

/// A tool list (held weakly: a dropped list is never matched again) and its JSON.
type RenderedTools = (Weak<[ToolSpec]>, Arc<RawValue>);

impl ToolsJson {
    fn get(
        &self,
        tools: &Arc<[ToolSpec]>,
        render: impl FnOnce(&[ToolSpec]) -> serde_json::Result<Box<RawValue>>,
    ) -> serde_json::Result<Arc<RawValue>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((list, json)) = last.as_ref() {
            if list.upgrade().is_some_and(|list| Arc::ptr_eq(&list, tools)) {
                return Ok(json.clone());
            }
        }
        let json: Arc<RawValue> = render(tools)?.into();
        *last = Some((Arc::downgrade(tools), json.clone()));
        Ok(json)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// `{base_url}/{path}` of provider `name`, with `headers` on every
    /// request and `timeout` for connecting and between reads.
    pub(in crate::providers) fn new(
        name: String,
        model: String,
        (base_url, path): (&str, &str),
        headers: HeaderMap,
        timeout: Duration,
        secret: Option<String>,
    ) -> Result<Self, ProviderError> {
        Ok(Endpoint {
            url: endpoint(&name, base_url, path)?,
            client: client(&name, headers, timeout)?,
            name,
            model,
            secret: secret.filter(|s| !s.is_empty()),
            tools: ToolsJson::default(),
        })
    }

    /// `tools` as the vendor's JSON (`render` turns a list into it), or
    /// `None` for no tools; the same list is rendered only once.
    pub(in crate::providers) fn tools_json(
        &self,
        tools: &Arc<[ToolSpec]>,
        render: impl FnOnce(&[ToolSpec]) -> serde_json::Result<Box<RawValue>>,
    ) -> Result<Option<Arc<RawValue>>, ProviderError> {
        if tools.is_empty() {
            return Ok(None);
        }
        self.tools
            .get(tools, render)
            .map(Some)
            .map_err(|e| ProviderError::Protocol {
                provider: self.name.clone(),
                message: format!("tool definitions cannot be encoded: {e}"),
            })
    }

    /// POST `body` and run `parser` over the streamed answer; an HTTP error
    /// status is classified before any event.
    pub(in crate::providers) async fn stream<B, P>(
        &self,
        body: &B,
        parser: P,
    ) -> Result<ProviderStream, ProviderError>
    where
        B: serde::Serialize + Sync,
        P: EventParser,
    {
        tracing::debug!(provider = %self.name, url = %self.url, "model request");
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body)
            .send()
            .await
            .map_err(|error| request_error(&self.name, &error))?;
        if !response.status().is_success() {
            return Err(status_error(&self.name, response, self.secret.as_deref()).await);
        }
        Ok(event_stream(response, self.name.clone(), parser))
    }
}

/// `{base_url}/{path}` as a URL.
fn endpoint(provider: &str, base_url: &str, path: &str) -> Result<reqwest::Url, ProviderError> {
    let joined = format!("{}/{path}", base_url.trim_end_matches('/'));
    reqwest::Url::parse(&joined).map_err(|error| ProviderError::Connect {
        provider: provider.to_owned(),
        message: format!("invalid base URL {base_url:?}: {error}"),
    })
}

/// A header value holding a secret, marked sensitive so that it is never
/// printed.
pub(in crate::providers) fn secret_header(
    provider: &str,
    value: &str,
) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| ProviderError::Auth {
        provider: provider.to_owned(),
        message: "the API key contains characters not allowed in an HTTP header".to_owned(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An HTTP client with `headers` on every request, a connect timeout and
/// an idle-read timeout of `timeout`.
fn client(
    provider: &str,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build()
        .map_err(|error| ProviderError::Connect {
            provider: provider.to_owned(),
            message: format!("cannot build the HTTP client: {}", chain(&error)),
        })
}

/// A failure to send the request or read the response headers.
pub(in crate::providers) fn request_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout {
            provider: provider.to_owned(),
        }
    } else {
        ProviderError::Connect {
            provider: provider.to_owned(),
            message: chain(error),
        }
    }
}

/// A failure while reading the streamed body: a broken stream.
fn body_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout {
            provider: provider.to_owned(),
        }
    } else {
        ProviderError::Protocol {
            provider: provider.to_owned(),
            message: format!("the stream broke: {}", chain(error)),
        }
    }
}

/// An error and its sources, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Classify a non-success response, with the vendor's message when the
/// body carries one. `secret` is scrubbed from that message.
pub(in crate::providers) async fn status_error(
    provider: &str,
    mut response: reqwest::Response,
    secret: Option<&str>,
) -> ProviderError {
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    let mut message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|json| error_message(&json))
        .unwrap_or_else(|| {
            let text: String = body.trim().chars().take(500).collect();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                text
            }
        });
    if let Some(secret) = secret.filter(|secret| !secret.is_empty()) {
        message = message.replace(secret, "[redacted]");
    }
    classify(provider, status.as_u16(), message, retry_after)
}

/// The error class of an HTTP status.
pub(in crate::providers) fn classify(
    provider: &str,
    status: u16,
    message: String,
    retry_after: Option<Duration>,
) -> ProviderError {
    let provider = provider.to_owned();
    match status {
        429 => {
            tracing::debug!(%provider, %message, ?retry_after, "rate limited");
            ProviderError::RateLimited {
                provider,
                retry_after,
            }
        }
        401 | 403 => ProviderError::Auth { provider, message },
        400..=499 => ProviderError::BadRequest {
            provider,
            status,
            message,
        },
        500..=599 => ProviderError::Server {
            provider,
            status,
            message,
        },
        _ => ProviderError::Protocol {
            provider,
            message: format!("unexpected HTTP status {status}: {message}"),
        },
    }
}

/// The message of a vendor error body: `{"error":{"message":…}}`
/// (OpenAI, Anthropic), `{"error":"…"}` (Ollama) or `{"message":…}`.
/// Also accepts the inner `error` object itself.
pub(in crate::providers) fn error_message(json: &Value) -> Option<String> {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    let error = json.get("error");
    text(error.and_then(|error| error.get("message")))
        .or_else(|| text(error))
        .or_else(|| text(json.get("message")))
}

/// How long the vendor asks us to wait: `retry-after-ms` (OpenAI), else
/// `retry-after` as seconds or an HTTP date.
pub(in crate::providers) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let seconds = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    if let Some(ms) = header("retry-after-ms").and_then(seconds) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Some(secs) = seconds(value) {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = UNIX_EPOCH + Duration::from_secs(http_date(value)?);
    Some(at.duration_since(now).unwrap_or_default())
}

/// Seconds since the Unix epoch of an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP date format servers send.
fn http_date(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|name| name == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if year < 1970 || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), for years from 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Tool-call arguments as JSON: empty → `{}`, invalid → the raw text as
/// a JSON string.
pub(in crate::providers) fn parse_arguments(raw: String) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(serde_json::Map::new());
    }
    serde_json::from_str(&raw).unwrap_or(Value::String(raw))
}

#[cfg(test)]
mod tests;

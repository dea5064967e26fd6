//! Retries and fallbacks, both decided before an answer's first event.
//!
//! A failure can show up in two places: `stream()` itself fails (the vendor
//! answered with an error status, or could not be reached), or it succeeds
//! and the stream's first item is an error (an `error` event before any
//! text). Both wrappers here treat the two alike by peeking at the first
//! item, and hand on a stream that yields it again followed by the rest.
//! Once an event has been yielded nothing is retried: the caller may already
//! have shown the text, and a second answer would not continue it.
//!
//! - [`Retrying`] tries the same provider again on retryable errors
//!   ([`ProviderError::is_retryable`]) with a doubling, deterministic
//!   backoff, or the vendor's `Retry-After`.
//! - [`Fallback`] moves on to the next provider on any error but
//!   [`ProviderError::BadRequest`], which the next provider would reject too.
//!
//! They compose: `Fallback::new(vec![Arc::new(Retrying::new(a, policy)), …])`
//! retries `a` before falling back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{CompletionRequest, LlmProvider, ProviderError, ProviderStream};

/// The longest wait a vendor's `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How [`Retrying`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles for each next one.
    pub initial_backoff: Duration,
    /// The longest wait between two tries (a vendor's `Retry-After`
    /// overrides it, up to 60 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, waiting 500 ms then 1 s (capped at 8 s).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (1-based) with `error`:
    /// the vendor's `Retry-After` when it gave one (at most 60 s), else
    /// `initial_backoff × 2^(attempt-1)`, at most `max_backoff`.
    pub fn delay(&self, attempt: u32, error: &ProviderError) -> Duration {
        if let ProviderError::RateLimited {
            retry_after: Some(retry_after),
            ..
        } = error
        {
            return (*retry_after).min(MAX_RETRY_AFTER);
        }
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Start `provider`'s answer and wait for its first item: an error there is
/// returned as the failure of the start; otherwise the stream is handed on
/// intact, first item included.
async fn start<P>(
    provider: &P,
    request: &CompletionRequest,
) -> Result<ProviderStream, ProviderError>
where
    P: LlmProvider + ?Sized,
{
    let mut stream = provider.stream(request).await?;
    match stream.next().await {
        Some(Err(error)) => Err(error),
        Some(Ok(first)) => Ok(Box::pin(
            futures_util::stream::once(async move { Ok(first) }).chain(stream),
        )),
        None => Ok(stream),
    }
}

/// A provider retried with backoff on retryable errors that happen before
/// the first event of its answer.
///
/// An error after the first event ends the stream as it is; one that is not
/// retryable, or the last try's, is returned from `stream()`.
#[derive(Debug, Clone)]
pub struct Retrying<P> {
    inner: P,
    policy: RetryPolicy,
}

impl<P> Retrying<P> {
    /// Retry `inner` as `policy` says.
    pub fn new(inner: P, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[async_trait]
impl<P: LlmProvider> LlmProvider for Retrying<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let error = match start(&self.inner, request).await {
                Ok(stream) => return Ok(stream),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= max_attempts {
                return Err(error);
            }
            let delay = self.policy.delay(attempt, &error);
            tracing::warn!(
                provider = self.inner.name(),
                attempt,
                max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                %error,
                "LLM request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// An ordered list of providers: the next is tried when one fails before
/// the first event of its answer.
///
/// Any error moves on except [`ProviderError::BadRequest`], which is
/// returned at once: the request itself is wrong. When all fail, the last
/// error is returned. [`name`](LlmProvider::name) and
/// [`model`](LlmProvider::model) are the first provider's.
pub struct Fallback {
    providers: Vec<Arc<dyn LlmProvider>>,
}

impl Fallback {
    /// Try `providers` in this order.
    pub fn new(providers: Vec<Arc<dyn LlmProvider>>) -> Self {
        Fallback { providers }
    }
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.providers
                    .iter()
                    .map(|provider| (provider.name(), provider.model())),
            )
            .finish()
    }
}

#[async_trait]
impl LlmProvider for Fallback {
    fn name(&self) -> &str {
        self.providers.first().map_or("fallback", |p| p.name())
    }

    fn model(&self) -> &str {
        self.providers.first().map_or("", |p| p.model())
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let mut last_error = None;
        for (index, provider) in self.providers.iter().enumerate() {
            let error = match start(provider.as_ref(), request).await {
                Ok(stream) => return Ok(stream),
                Err(error) => error,
            };
            if matches!(error, ProviderError::BadRequest { .. }) {
                return Err(error);
            }
            if let Some(next) = self.providers.get(index + 1) {
                tracing::warn!(
                    provider = provider.name(),
                    next = next.name(),
                    %error,
                    "LLM provider failed; falling back"
                );
            }
            last_error = Some(error);
        }
        Err(last_error.unwrap_or_else(|| ProviderError::Connect {
            provider: "fallback".to_owned(),
            message: "no providers configured".to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use ocg_core::Message;

    use super::super::openai::{OpenAiConfig, OpenAiProvider};
    use super::super::{Completion, FinishReason, ProviderEvent};
    use super::*;

    /// A fake OpenAI-compatible server whose `n`-th request (0-based) is
    /// answered by `respond(n)`; returns its URL and the request counter.
    async fn fake<F>(respond: F) -> (String, Arc<AtomicUsize>)
    where
        F: Fn(usize) -> Response + Clone + Send + Sync + 'static,
    {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let router = Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let respond = respond.clone();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move { respond(n) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (format!("http://{addr}/v1"), count)
    }

    fn provider(name: &str, base_url: String) -> OpenAiProvider {
        OpenAiProvider::new(OpenAiConfig {
            name: name.into(),
            base_url,
            api_key: None,
            model: format!("{name}-model"),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            messages: vec![Message::user("hi")],
            ..Default::default()
        }
    }

    fn answer(text: &str) -> Response {
        let body = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n\
             data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
             data: [DONE]\n\n"
        );
        ([("content-type", "text/event-stream")], body).into_response()
    }

    fn status(code: u16, message: &str) -> Response {
        let body = format!("{{\"error\":{{\"message\":\"{message}\"}}}}");
        (StatusCode::from_u16(code).unwrap(), body).into_response()
    }

    fn text_completion(text: &str) -> Completion {
        Completion {
            text: text.into(),
            tool_calls: Vec::new(),
            usage: None,
            finish_reason: FinishReason::Stop,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_retry_after_overrides_it() {
        let policy = RetryPolicy::default();
        let server = ProviderError::Server {
            provider: "p".into(),
            status: 503,
            message: String::new(),
        };
        let delays: Vec<u64> = (1..=7)
            .map(|attempt| policy.delay(attempt, &server).as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(policy.delay(u32::MAX, &server), Duration::from_secs(8));
        let limited = |secs| ProviderError::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(policy.delay(1, &limited(20)), Duration::from_secs(20));
        assert_eq!(policy.delay(1, &limited(600)), Duration::from_secs(60));
        let unknown = ProviderError::RateLimited {
            provider: "p".into(),
            retry_after: None,
        };
        assert_eq!(policy.delay(2, &unknown), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn retries_server_errors_until_success() {
        let (url, count) = fake(|n| {
            if n < 2 {
                status(503, "busy")
            } else {
                answer("hello")
            }
        })
        .await;
        let retrying = Retrying::new(provider("openai", url), fast());
        assert_eq!(retrying.name(), "openai");
        assert_eq!(retrying.model(), "openai-model");
        let completion = retrying.complete(&request()).await.unwrap();
        assert_eq!(completion, text_completion("hello"));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let (url, count) = fake(|_| status(500, "down")).await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let error = retrying.stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Server {
                provider: "openai".into(),
                status: 500,
                message: "down".into(),
            }
        );
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let (url, count) = fake(|n| {
            if n == 0 {
                let mut response = status(429, "slow down");
                response
                    .headers_mut()
                    .insert("retry-after-ms", "80".parse().unwrap());
                response
            } else {
                answer("ok")
            }
        })
        .await;
        // The policy's own backoff is far shorter than the vendor's 80 ms.
        let retrying = Retrying::new(provider("openai", url), fast());
        let started = Instant::now();
        let completion = retrying.complete(&request()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert_eq!(completion.text, "ok");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn retries_an_error_that_is_the_first_item() {
        let (url, count) = fake(|n| {
            if n == 0 {
                let body = "data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n";
                ([("content-type", "text/event-stream")], body).into_response()
            } else {
                answer("second")
            }
        })
        .await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let completion = retrying.complete(&request()).await.unwrap();
        assert_eq!(completion.text, "second");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn never_retries_after_an_event_was_yielded() {
        // One delta, then the connection breaks.
        let (url, count) = fake(|_| {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from_static(
                    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
                )),
                Err(std::io::Error::other("connection lost")),
            ];
            let body = futures_util::stream::iter(chunks).then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                chunk
            });
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response()
        })
        .await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let items: Vec<_> = retrying.stream(&request()).await.unwrap().collect().await;
        assert_eq!(items[0], Ok(ProviderEvent::TextDelta("Hel".into())));
        assert!(items[1].is_err(), "{items:?}");
        assert_eq!(items.len(), 2);
        assert_eq!(count.load(Ordering::SeqCst), 1);

        // Even when the error after the delta is a retryable one.
        let (url, count) = fake(|_| {
            let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                        data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n";
            ([("content-type", "text/event-stream")], body).into_response()
        })
        .await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let items: Vec<_> = retrying.stream(&request()).await.unwrap().collect().await;
        assert_eq!(items[0], Ok(ProviderEvent::TextDelta("Hel".into())));
        assert!(matches!(&items[1], Err(error) if error.is_retryable()));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn does_not_retry_a_bad_request_or_auth_error() {
        let (url, count) = fake(|_| status(400, "bad schema")).await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let error = retrying.stream(&request()).await.err().unwrap();
        assert!(matches!(
            error,
            ProviderError::BadRequest { status: 400, .. }
        ));
        assert_eq!(count.load(Ordering::SeqCst), 1);

        let (url, count) = fake(|_| status(401, "bad key")).await;
        let retrying = Retrying::new(provider("openai", url), fast());
        let error = retrying.stream(&request()).await.err().unwrap();
        assert!(matches!(error, ProviderError::Auth { .. }));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn falls_back_to_the_next_provider() {
        let (first_url, first_count) = fake(|_| status(500, "down")).await;
        let (second_url, second_count) = fake(|_| answer("from second")).await;
        let fallback = Fallback::new(vec![
            Arc::new(provider("first", first_url)),
            Arc::new(provider("second", second_url)),
        ]);
        assert_eq!(fallback.name(), "first");
        assert_eq!(fallback.model(), "first-model");
        let completion = fallback.complete(&request()).await.unwrap();
        assert_eq!(completion.text, "from second");
        assert_eq!(first_count.load(Ordering::SeqCst), 1);
        assert_eq!(second_count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn fallback_returns_the_last_error_when_all_fail() {
        let (first_url, _) = fake(|_| status(401, "bad key")).await;
        let (second_url, _) = fake(|_| status(503, "busy")).await;
        let fallback = Fallback::new(vec![
            Arc::new(provider("first", first_url)),
            Arc::new(provider("second", second_url)),
        ]);
        let error = fallback.stream(&request()).await.err().unwrap();
        assert_eq!(
            error,
            ProviderError::Server {
                provider: "second".into(),
                status: 503,
                message: "busy".into(),
            }
        );
        let empty = Fallback::new(Vec::new());
        assert!(empty.stream(&request()).await.is_err());
    }

    #[tokio::test]
    async fn fallback_returns_a_bad_request_at_once() {
        let (first_url, _) = fake(|_| status(400, "bad schema")).await;
        let (second_url, second_count) = fake(|_| answer("unused")).await;
        let fallback = Fallback::new(vec![
            Arc::new(provider("first", first_url)),
            Arc::new(provider("second", second_url)),
        ]);
        let error = fallback.stream(&request()).await.err().unwrap();
        assert!(matches!(error, ProviderError::BadRequest { .. }));
        assert_eq!(second_count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn retrying_inside_fallback_composes() {
        let (first_url, first_count) = fake(|_| status(503, "busy")).await;
        let (second_url, _) = fake(|_| answer("fallback")).await;
        let fallback = Fallback::new(vec![
            Arc::new(Retrying::new(provider("first", first_url), fast())),
            Arc::new(provider("second", second_url)),
        ]);
        let completion = fallback.complete(&request()).await.unwrap();
        assert_eq!(completion.text, "fallback");
        assert_eq!(first_count.load(Ordering::SeqCst), 3);
    }
}

//! Entry points for the fuzz targets in `fuzz/`: the parsers that take
//! outside input and are not public. Compiled only under `--cfg fuzzing`,
//! which `cargo fuzz` sets; nothing here is part of the API.

use futures_util::StreamExt;

/// The `(event, data)` of every event the SSE decoder finds in `chunks`
/// (fed one after another, then the end of the body), or its error.
pub fn sse_events(chunks: &[&[u8]]) -> Result<Vec<(String, String)>, String> {
    let mut decoder = crate::sse::SseDecoder::default();
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(decoder.feed(chunk)?);
    }
    events.extend(decoder.finish());
    Ok(events.into_iter().map(|e| (e.event, e.data)).collect())
}

/// Which vendor dialect a stream body is parsed as.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    /// OpenAI-compatible `/chat/completions`.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// Run a provider's stream parser over a body given as chunks; every item
/// it yields, as text.
pub async fn provider_stream(dialect: Dialect, chunks: Vec<Vec<u8>>) -> Vec<String> {
    let stream = match dialect {
        Dialect::OpenAi => crate::providers::openai::parse_stream(chunks),
        Dialect::Anthropic => crate::providers::anthropic::parse_stream(chunks),
    };
    stream.map(|item| format!("{item:?}")).collect().await
}
